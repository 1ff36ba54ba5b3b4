# tools/ holds build helpers for pip-installed ROS, not ROS packages of this workspace.
# Wheels of ROS messages export include dirs of their build host (/opt/python/...); drop
# include dirs that do not exist here at the end of configure so CMake does not refuse them.
function(_kos_audio_drop_missing_includes)
  get_directory_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" IMPORTED_TARGETS)
  foreach(_t IN LISTS _targets)
    get_target_property(_dirs ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(_dirs)
      set(_kept "")
      foreach(_d IN LISTS _dirs)
        if(EXISTS "${_d}" OR _d MATCHES "^\\$<")
          list(APPEND _kept "${_d}")
        endif()
      endforeach()
      set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
    endif()
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _kos_audio_drop_missing_includes)
