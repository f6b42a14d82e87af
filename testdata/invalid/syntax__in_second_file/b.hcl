model "a" {
  source = "/m.gguf"
  launch {
    start_cmd = "srv"
  }
}}
