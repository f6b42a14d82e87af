host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
    gpus     = "two"
  }
}
