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
    port = "eighty"
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
