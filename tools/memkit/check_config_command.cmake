# Test of `memkit config check`: the sample file is valid and its effective configuration is
# printed; a file with an error gives exit status 1 and names file:line:column and the key.
# Usage: cmake -DMEMKIT_CLI=<memkit> -DSAMPLE=<memkit.toml> -DWORK_DIR=<dir> -P check_config_command.cmake
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# The environment must not change what the sample says.
foreach(var BUDGET SOFT_BUDGET SMALL_MAX MEDIUM_MAX SMALL_SPACING SMALL_MIN_CLASS SMALL_STEP
    SMALL_NODES_PER_CHUNK MEDIUM_REGION_SIZE MEDIUM_MAX_TOTAL PRESSURE_MEDIUM PRESSURE_HIGH
    PRESSURE_CRITICAL)
  unset(ENV{MEMKIT_${var}})
endforeach()

execute_process(COMMAND "${MEMKIT_CLI}" config check "${SAMPLE}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "memkit config check ${SAMPLE} exited with ${rc}:\n${out}${err}")
endif()
foreach(line [=[name = "request-server"]=] [=[budget = "256MiB"]=] [=[max = "64KiB"]=]
    [=[region_size = "4MiB"]=] [=[high = 0.8]=] [=[[memory_system.pressure]]=])
  string(FIND "${out}" "${line}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "'${line}' missing from the output:\n${out}")
  endif()
endforeach()

# An environment variable overrides the file.
execute_process(COMMAND ${CMAKE_COMMAND} -E env MEMKIT_BUDGET=1GiB
    "${MEMKIT_CLI}" config check "${SAMPLE}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${out}" [=[budget = "1GiB"]=] at)
if(NOT rc EQUAL 0 OR at EQUAL -1)
  message(FATAL_ERROR "MEMKIT_BUDGET=1GiB did not override the file (${rc}):\n${out}${err}")
endif()

set(bad "${WORK_DIR}/bad.toml")
file(WRITE "${bad}" "[memory_system]\nbudget = \"1GiB\"\n\n[memory_system.pressure]\nhihg = 0.9\n")
execute_process(COMMAND "${MEMKIT_CLI}" config check "${bad}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "expected exit status 1 for ${bad}, got ${rc}:\n${out}${err}")
endif()
if(NOT err MATCHES "bad\\.toml:5:1: memory_system\\.pressure\\.hihg: unknown key")
  message(FATAL_ERROR "unexpected error message for ${bad}:\n${err}")
endif()

execute_process(COMMAND "${MEMKIT_CLI}" config check "${WORK_DIR}/missing.toml"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT err MATCHES "missing\\.toml: cannot open: No such file or directory")
  message(FATAL_ERROR "unexpected result for a missing file (${rc}):\n${out}${err}")
endif()
message(STATUS "memkit config check: ok")
