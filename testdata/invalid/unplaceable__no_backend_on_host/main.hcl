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

backend "cuda" {
  runtime = "process"
}

model "a" {
  source = "/srv/models/m.gguf"
  backend_policy {
    prefer = ["cuda"]
  }
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
