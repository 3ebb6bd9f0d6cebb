# llama.cpp as llama-cpp-python installs it: shared libraries under llama_cpp/lib/, headers and
# sources from the same version's sdist (no second compile of llama.cpp itself).
#
# Inputs (cache variables, found automatically when unset):
#   EDGE_PYTHON          the Python that has llama-cpp-python installed
#   EDGE_LLAMA_LIB_DIR   the directory with libllama / libggml* / libmtmd
#   EDGE_LLAMA_SRC       llama.cpp's source tree (the sdist's vendor/llama.cpp)
# Outputs: imported targets edge::llama, edge::ggml, edge::ggml_base, edge::ggml_cpu, edge::mtmd,
# and EDGE_LLAMA_SRC / EDGE_LLAMA_LIB_DIR / EDGE_LLAMA_VERSION.

if(NOT EDGE_LLAMA_LIB_DIR OR NOT EDGE_LLAMA_VERSION)  # a cross build presets both and needs no Python
  find_package(Python3 COMPONENTS Interpreter)
endif()
set(EDGE_PYTHON "${Python3_EXECUTABLE}" CACHE FILEPATH "Python with llama-cpp-python installed")

if(NOT EDGE_LLAMA_LIB_DIR OR NOT EDGE_LLAMA_VERSION)
  execute_process(
    COMMAND "${EDGE_PYTHON}" -c
      "import importlib.metadata as m, importlib.util as u, os; s = u.find_spec('llama_cpp'); print(m.version('llama-cpp-python')); print(os.path.join(os.path.dirname(s.origin), 'lib'))"
    OUTPUT_VARIABLE _edge_llama_out RESULT_VARIABLE _edge_llama_rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _edge_llama_rc EQUAL 0)
    message(FATAL_ERROR "edge: llama-cpp-python is not importable by ${EDGE_PYTHON}; pip install llama-cpp-python first")
  endif()
  string(REPLACE "\n" ";" _edge_llama_out "${_edge_llama_out}")
  list(GET _edge_llama_out 0 _edge_ver)
  list(GET _edge_llama_out 1 _edge_dir)
  set(EDGE_LLAMA_VERSION "${_edge_ver}" CACHE STRING "llama-cpp-python version")
  set(EDGE_LLAMA_LIB_DIR "${_edge_dir}" CACHE PATH "llama-cpp-python's lib directory")
endif()

if(NOT EDGE_LLAMA_SRC)
  set(_edge_src "$ENV{HOME}/.cache/edge/sources/llama_cpp_python-${EDGE_LLAMA_VERSION}/vendor/llama.cpp")
  set(EDGE_LLAMA_SRC "${_edge_src}" CACHE PATH "llama.cpp sources of the same version (the sdist's vendor/llama.cpp)")
endif()
if(NOT EXISTS "${EDGE_LLAMA_SRC}/include/llama.h" OR NOT EXISTS "${EDGE_LLAMA_SRC}/tools/mtmd/mtmd.h")
  message(FATAL_ERROR "edge: no llama.cpp ${EDGE_LLAMA_VERSION} sources at ${EDGE_LLAMA_SRC}; run `python tests/fetch_llama_sources.py` or pass -DEDGE_LLAMA_SRC=...")
endif()

# Cross builds (Android NDK, iOS): preset EDGE_LLAMA_LIB_DIR and EDGE_LLAMA_VERSION (and EDGE_LLAMA_SRC) and
# no Python is asked. NO_CMAKE_FIND_ROOT_PATH: a toolchain's CMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY would
# otherwise look for the given directory inside the sysroot; a static archive (.a, e.g. an iOS build of
# llama.cpp) is imported as STATIC, anything else as SHARED.
function(_edge_import target name)
  find_library(_lib_${target} NAMES ${name} PATHS "${EDGE_LLAMA_LIB_DIR}" NO_DEFAULT_PATH NO_CMAKE_FIND_ROOT_PATH)
  if(NOT _lib_${target})
    message(FATAL_ERROR "edge: lib${name} is not in ${EDGE_LLAMA_LIB_DIR}")
  endif()
  if(_lib_${target} MATCHES "\\.a$")
    add_library(edge::${target} STATIC IMPORTED GLOBAL)
  else()
    add_library(edge::${target} SHARED IMPORTED GLOBAL)
  endif()
  set_target_properties(edge::${target} PROPERTIES IMPORTED_LOCATION "${_lib_${target}}")
endfunction()

_edge_import(ggml_base ggml-base)
_edge_import(ggml_cpu ggml-cpu)
_edge_import(ggml ggml)
_edge_import(llama llama)
_edge_import(mtmd mtmd)
set_target_properties(edge::ggml_base edge::ggml_cpu edge::ggml PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${EDGE_LLAMA_SRC}/ggml/include")
set_target_properties(edge::llama PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${EDGE_LLAMA_SRC}/include;${EDGE_LLAMA_SRC}/ggml/include"
  INTERFACE_LINK_LIBRARIES "edge::ggml;edge::ggml_base")
set_target_properties(edge::mtmd PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${EDGE_LLAMA_SRC}/tools/mtmd"
  INTERFACE_LINK_LIBRARIES "edge::llama")

# Header-only libraries vendored in llama.cpp's tree: nlohmann/json (manifest), stb_image (the example's decoder).
add_library(edge_vendor_json INTERFACE)
target_include_directories(edge_vendor_json SYSTEM INTERFACE "${EDGE_LLAMA_SRC}/vendor")
message(STATUS "edge: llama-cpp-python ${EDGE_LLAMA_VERSION}, libraries ${EDGE_LLAMA_LIB_DIR}, sources ${EDGE_LLAMA_SRC}")
