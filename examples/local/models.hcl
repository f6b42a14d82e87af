model "qwen2.5-0.5b" {
  source   = "${path.config}/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
  size_gib = 0.4
  runtime_defaults {
    port = 18080
  }
  launch {
    start_cmd  = "${var.server} --port {port} --model {model} --load-secs ${var.load_secs}"
    probe_http = "/v1/models"
  }
}

model "llama3.2-1b" {
  depends_on = ["model.nomic-embed"]
  source     = "${path.config}/models/llama-3.2-1b-instruct-q4_k_m.gguf"
  size_gib   = 0.8
  runtime_defaults {
    port = 18081
  }
  launch {
    start_cmd  = "${var.server} --port {port} --model {model} --load-secs ${var.load_secs}"
    probe_http = "/v1/models"
  }
}

# Embeddings come up first: the chat model below depends on them.
model "nomic-embed" {
  source   = "${path.config}/models/nomic-embed-text-v1.5.f16.gguf"
  size_gib = 0.3
  runtime_defaults {
    port = 18082
  }
  launch {
    start_cmd = "${var.server} --port {port} --model {model} --load-secs ${var.load_secs}"
    probe_cmd = "curl -fsS http://127.0.0.1:{port}/health"
  }
}
