host "gpu" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
    vram_gib = 24
  }
}

backend "cpu" {
  runtime = "process"
}

model "qwen-14b" {
  source = "/srv/models/m.gguf"
  size_gib = 9
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}

model "qwen-32b" {
  source = "/srv/models/m.gguf"
  size_gib = 19.5
  runtime_defaults {
    port = 8081
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
