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
    start_cmd = "awk '{print $1}' --port {port}"
  }
}
