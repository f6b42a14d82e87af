host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu", "cdua"]
  }
}

backend "cpu" {
  runtime = "process"
}

backend "cuda" {
  runtime = "process"
}
