host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
  }
}

backend "cpu" {
  runtime = "process"
}

model "a" {
  source = "/srv/models/m.gguf"
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd  = "srv --port {port}"
    probe_cmd  = "curl -fsS http://127.0.0.1:{port}/health"
    probe_http = "/health"
  }
}
