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
  source = "/m.gguf"
  env    = { "LLAMA-API-KEY" = "x" }
  launch {
    start_cmd = "srv"
  }
}
