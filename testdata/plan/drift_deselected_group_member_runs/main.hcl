host "gpu-a" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
  }
  run_dir = "/srv/berth"
}

backend "cpu" {}

model "qwen" {
  source   = "/srv/models/qwen.gguf"
  size_gib = 4.7
  group    = "main"
  default  = true
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd  = "llama-server -m {source} --port {port}"
    probe_http = "/v1/models"
  }
}

model "llama" {
  source   = "/srv/models/llama.gguf"
  size_gib = 4.9
  group    = "main"
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd  = "llama-server -m {source} --port {port}"
    probe_http = "/v1/models"
  }
}
