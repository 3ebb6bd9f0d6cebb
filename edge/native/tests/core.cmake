# native-core's unit tests: the manifest reader on hostile inputs, sha256, UTF-8 streaming, image checks, and
# the C ABI's status/messages. Under EDGE_SANITIZE they run with ASan (leaks fail) + UBSan.
if(TARGET edge_core_obj)
  add_executable(edge-core-tests ${CMAKE_CURRENT_LIST_DIR}/test_core.cpp)
  target_link_libraries(edge-core-tests PRIVATE edge_core_obj edge)
  target_include_directories(edge-core-tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../src/core)
  set_target_properties(edge-core-tests PROPERTIES BUILD_RPATH "$<TARGET_FILE_DIR:edge>;${EDGE_LLAMA_LIB_DIR}")
  add_test(NAME edge-core COMMAND edge-core-tests ${CMAKE_CURRENT_BINARY_DIR}/core-scratch)
  set_tests_properties(edge-core PROPERTIES
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:exitcode=23;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()

# a driver over a real bundle (tests/native/test_native_core.py runs it; it needs an exported bundle)
if(TARGET edge)
  add_executable(edge-core-robust ${CMAKE_CURRENT_LIST_DIR}/core_robust.cpp)
  target_link_libraries(edge-core-robust PRIVATE edge)
  set_target_properties(edge-core-robust PROPERTIES BUILD_RPATH "$<TARGET_FILE_DIR:edge>;${EDGE_LLAMA_LIB_DIR}")
endif()

# the header is plain C
if(TARGET edge)
  add_executable(edge-core-c-header ${CMAKE_CURRENT_LIST_DIR}/core_c_header.c)
  set_target_properties(edge-core-c-header PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON
    BUILD_RPATH "$<TARGET_FILE_DIR:edge>;${EDGE_LLAMA_LIB_DIR}")
  target_compile_options(edge-core-c-header PRIVATE -Wall -Wextra -Werror -pedantic)
  target_link_libraries(edge-core-c-header PRIVATE edge)
  add_test(NAME edge-core-c-header COMMAND edge-core-c-header)
endif()
