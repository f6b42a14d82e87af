host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
  }
  lables = { rack = "r1" }
}

backend "cpu" {
  runtime = "process"
}
