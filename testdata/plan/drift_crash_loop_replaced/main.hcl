host "gpu-a" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cuda", "cpu"]
  }
  run_dir = "/srv/berth"
}

backend "cuda" {
  verify_cmd = "nvidia-smi -L"
  args       = ["--n-gpu-layers", "999"]
}

backend "cpu" {}

model "qwen2.5-7b" {
  source   = "/srv/models/qwen2.5-7b-instruct-q4_k_m.gguf"
  size_gib = 4.7
  backend_policy {
    prefer = ["cuda", "cpu"]
  }
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd  = "llama-server -m {source} --port {port} {backend_args}"
    probe_http = "/v1/models"
  }
}
