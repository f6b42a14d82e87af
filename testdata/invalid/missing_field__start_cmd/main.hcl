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
    probe_http = "/health"
  }
}
