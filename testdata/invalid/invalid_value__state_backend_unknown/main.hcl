settings {
  state {
    backend = "sleed"
  }
}

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
