# The vision part's tests (helper "native-vision"): the golden-vector checker and the unit test.
# Included by edge/native/tests/CMakeLists.txt, or by src/vision/CMakeLists.txt when that is absent.
include_guard(GLOBAL)
add_executable(edge-vision-golden ${CMAKE_CURRENT_LIST_DIR}/vision_golden.cpp)
target_link_libraries(edge-vision-golden PRIVATE edge_vision)
add_executable(edge-vision-unit ${CMAKE_CURRENT_LIST_DIR}/vision_unit.cpp)
target_link_libraries(edge-vision-unit PRIVATE edge_vision)
add_test(NAME edge_vision_unit COMMAND edge-vision-unit)
