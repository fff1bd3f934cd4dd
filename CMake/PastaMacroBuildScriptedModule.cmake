#-----------------------------------------------------------------------------
# pastaMacroBuildScriptedModule(NAME <module> SCRIPTS <python files>...)
#
# How each of the extension's scripted modules is built, in one place: the module's Python files
# (SCRIPTS, relative to the module folder), its icon and Designer file as resources
# (Resources/Icons/<module>.png, Resources/UI/<module>.ui), Slicer's generic module tests, and the
# module's own test class (<module>Test in <module>.py) registered as the ctest py_<module>.
# A macro, like slicerMacroBuildScriptedModule: it runs in the scope of the module's CMakeLists.
macro(pastaMacroBuildScriptedModule)
  cmake_parse_arguments(PASTA_MODULE "" "NAME" "SCRIPTS" ${ARGN})

  set(MODULE_PYTHON_RESOURCES
    Resources/Icons/${PASTA_MODULE_NAME}.png
    Resources/UI/${PASTA_MODULE_NAME}.ui
    )

  slicerMacroBuildScriptedModule(
    NAME ${PASTA_MODULE_NAME}
    SCRIPTS ${PASTA_MODULE_SCRIPTS}
    RESOURCES ${MODULE_PYTHON_RESOURCES}
    WITH_GENERIC_TESTS
    )

  if(BUILD_TESTING)
    # Register the unittest subclass in the main script as a ctest.
    # Note that the test will also be available at runtime.
    slicer_add_python_unittest(SCRIPT ${PASTA_MODULE_NAME}.py)
  endif()
endmacro()
