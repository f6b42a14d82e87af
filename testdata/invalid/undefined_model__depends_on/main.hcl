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

model "chat" {
  source = "/srv/models/m.gguf"
  depends_on = ["model.embeder"]
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}

model "embedder" {
  source = "/srv/models/m.gguf"
  runtime_defaults {
    port = 8081
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
