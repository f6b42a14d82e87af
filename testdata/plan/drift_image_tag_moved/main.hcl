host "gpu-a" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cuda"]
  }
  run_dir = "/srv/berth"
}

backend "cuda" {
  runtime = "docker"
  container {
    image = "ghcr.io/ggml-org/llama.cpp:server-cuda"
  }
}

model "qwen2.5-7b" {
  source   = "/models/qwen2.5-7b-instruct-q4_k_m.gguf"
  size_gib = 4.7
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd  = "llama-server -m {source} --port {port}"
    probe_http = "/v1/models"
  }
}
