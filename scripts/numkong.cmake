# NumKong (USearch's SIMD distance kernels, from scripts/fetch-usearch.mjs) as the static library
# qrank_numkong, with runtime dispatch: every kernel is compiled for each instruction set this
# compiler can target (probed once, as NumKong's own probes/probe.js does), and the running CPU's
# best is chosen when an index is created. Nothing here depends on the build machine's CPU.
#   qrank_add_numkong(<usearch source dir>)   defines qrank_numkong
function(qrank_add_numkong dir)
  set(nk "${dir}/numkong")
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    set(probes
      "HASWELL x86_haswell -mavx2 -mfma -mf16c"
      "SKYLAKE x86_skylake -mavx512f -mavx512bw -mavx512dq -mavx512vl"
      "ICELAKE x86_icelake -mavx512vnni -mavx512vl"
      "GENOA x86_genoa -mavx512bf16 -mavx512vl"
      "SAPPHIRE x86_sapphire -mavx512fp16 -mavx512vl"
      "SAPPHIREAMX x86_sapphireamx -mamx-tile -mamx-int8"
      "GRANITEAMX x86_graniteamx -mamx-tile -mamx-fp16"
      "DIAMOND x86_diamond -mavx10.2-512"
      "TURIN x86_turin -mavx512vp2intersect"
      "ALDER x86_alder -mavxvnni"
      "SIERRA x86_sierra -mavxvnniint8")
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
    set(probes
      "NEON arm_neon -march=armv8-a+simd"
      "NEONHALF arm_neon_half -march=armv8.2-a+simd+fp16"
      "NEONSDOT arm_neon_sdot -march=armv8.2-a+dotprod"
      "NEONBFDOT arm_neon_bfdot -march=armv8.6-a+simd+bf16"
      "NEONFHM arm_neon_fhm -march=armv8.2-a+simd+fp16+fp16fml"
      "SVE arm_sve -march=armv8.2-a+sve"
      "SVEHALF arm_sve_half -march=armv8.2-a+sve+fp16"
      "SVEBFDOT arm_sve_bfdot -march=armv8.2-a+sve+bf16"
      "SVESDOT arm_sve_sdot -march=armv8.2-a+sve+dotprod"
      "SVE2 arm_sve2 -march=armv8.2-a+sve2")
  else()
    set(probes "")
  endif()
  set(header "/* qrank: the instruction sets this compiler targets (scripts/numkong.cmake) */\n")
  foreach(probe IN LISTS probes)
    separate_arguments(parts UNIX_COMMAND "${probe}")
    list(POP_FRONT parts name file)
    try_compile(ok "${CMAKE_BINARY_DIR}/numkong-probes/${name}" SOURCES "${nk}/probes/${file}.c" COMPILE_DEFINITIONS ${parts})
    if(ok)
      string(APPEND header "#define NK_TARGET_${name} 1\n")
      list(APPEND found ${name})
    else()
      string(APPEND header "#define NK_TARGET_${name} 0\n")
    endif()
  endforeach()
  file(WRITE "${CMAKE_BINARY_DIR}/nk_probes.h" "${header}")
  message(STATUS "qrank: NumKong kernels for ${found}")

  file(GLOB sources "${nk}/c/numkong.c" "${nk}/c/dispatch_*.c")
  add_library(qrank_numkong STATIC ${sources})
  target_include_directories(qrank_numkong SYSTEM PUBLIC "${nk}/include")
  target_compile_definitions(qrank_numkong PUBLIC NK_DYNAMIC_DISPATCH=1 NK_NATIVE_F16=0 NK_NATIVE_BF16=0)
  target_compile_options(qrank_numkong PRIVATE -O3 -w -include "${CMAKE_BINARY_DIR}/nk_probes.h")
  set_target_properties(qrank_numkong PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
endfunction()
