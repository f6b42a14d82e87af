settings {
  state_dir = ".state"
}
