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
  source = lowercase("/SRV/m.gguf")
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
