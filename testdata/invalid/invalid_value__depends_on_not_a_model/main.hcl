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
  depends_on = ["host.local"]
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
