# Tests of edge_projector (src/projector), included by tests/CMakeLists.txt.
#   edge-projector-errors: missing / truncated / non-GGUF / non-vision files -> an error, never an abort.
#   edge-projector-encode: the encoder on raw float32 pixels (driven by tests/native/test_native_projector.py).
if(TARGET edge_projector)
  add_executable(edge-projector-encode "${CMAKE_CURRENT_LIST_DIR}/projector_encode.cpp")
  target_include_directories(edge-projector-encode SYSTEM PRIVATE "${CMAKE_CURRENT_LIST_DIR}/../src/vision")
  target_link_libraries(edge-projector-encode PRIVATE edge_projector edge_vendor_json)

  add_executable(edge-projector-errors "${CMAKE_CURRENT_LIST_DIR}/projector_errors.cpp")
  target_link_libraries(edge-projector-errors PRIVATE edge_projector)
  add_test(NAME projector_errors COMMAND edge-projector-errors "${CMAKE_CURRENT_BINARY_DIR}/projector_errors_work")
  # under EDGE_SANITIZE a leak or any UB report fails the test
  set_tests_properties(projector_errors PROPERTIES
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:exitcode=23;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()
