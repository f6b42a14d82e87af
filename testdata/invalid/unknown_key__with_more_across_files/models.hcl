model "a" {
  source = "/srv/models/m.gguf"
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd = "srv --port {prot}"
  }
}

model "b" {
  source = "/srv/models/m.gguf"
  depends_on = ["model.zz"]
  runtime_defaults {
    port = 8081
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
