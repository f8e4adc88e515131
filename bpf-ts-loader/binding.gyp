{
  "targets": [
    {
      "target_name": "bpf_ts_loader",
      "sources": ["src/binding.c", "src/caps.c", "src/notify.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
