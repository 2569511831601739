include(CMakePackageConfigHelpers)

set(MEMKIT_INSTALL_TARGETS memkit)
if(MEMKIT_HAS_CONFIG)
  list(APPEND MEMKIT_INSTALL_TARGETS memkit_config)
endif()
install(TARGETS ${MEMKIT_INSTALL_TARGETS} EXPORT memkitTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/memkit DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT memkitTargets NAMESPACE memkit:: FILE memkitTargets.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/memkit)

configure_package_config_file(cmake/memkitConfig.cmake.in
  ${PROJECT_BINARY_DIR}/memkitConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/memkit)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/memkitConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/memkitConfig.cmake ${PROJECT_BINARY_DIR}/memkitConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/memkit)

# The .pc file finds its prefix relative to its own location, so it stays right when the
# install prefix is chosen at install time (cmake --install --prefix).
file(RELATIVE_PATH MEMKIT_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" MEMKIT_PC_TO_PREFIX "${MEMKIT_PC_TO_PREFIX}")
configure_file(cmake/memkit.pc.in ${PROJECT_BINARY_DIR}/memkit.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/memkit.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(MEMKIT_HAS_CONFIG)
  configure_file(cmake/memkit-config.pc.in ${PROJECT_BINARY_DIR}/memkit-config.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/memkit-config.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()
