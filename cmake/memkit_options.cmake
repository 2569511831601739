# Warnings and sanitizers for memkit's own targets (never forced on consumers).
set(MEMKIT_WARNINGS -Wall -Wextra -Wpedantic -Werror -Wshadow -Wnon-virtual-dtor -Wold-style-cast
    -Wcast-align -Woverloaded-virtual -Wnull-dereference)

set(MEMKIT_SANITIZE_FLAGS "")
if(MEMKIT_SANITIZE)
  set(MEMKIT_SANITIZE_FLAGS -fsanitize=${MEMKIT_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
endif()

function(memkit_target_options target)
  target_compile_options(${target} PRIVATE ${MEMKIT_WARNINGS})
  if(MEMKIT_SANITIZE_FLAGS)
    target_compile_options(${target} PUBLIC $<BUILD_INTERFACE:${MEMKIT_SANITIZE_FLAGS}>)
    target_link_options(${target} PUBLIC $<BUILD_INTERFACE:${MEMKIT_SANITIZE_FLAGS}>)
  endif()
endfunction()
