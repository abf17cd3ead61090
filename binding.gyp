{
  "targets": [
    {
      "target_name": "qrank",
      "sources": ["addon/addon.cc", "addon/pipeline_wrap.cc", "addon/index_wrap.cc", "addon/errors.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native",
        "deps/llama.cpp/include",
        "deps/llama.cpp/ggml/include"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti"],
      "libraries": ["<!@(node scripts/build-core.mjs --gyp-libs)"]
    }
  ]
}
