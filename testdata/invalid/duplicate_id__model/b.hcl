model "qwen" {
  source = "/srv/models/m.gguf"
  runtime_defaults {
    port = 8081
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
