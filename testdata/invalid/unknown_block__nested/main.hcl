host "local" {
  conection {
    transport = "local"
  }
}
