# -*- Python -*-
# lit configuration of netc: .mlir (dialect and passes) and .net (language)
# tests, run with FileCheck from llvm-19-tools.

import os

import lit.formats
from lit.llvm import llvm_config

config.name = "netc"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".net"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit", "fuzz", "e2e"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.netc_obj_root, "test")
config.substitutions.append(("%examples", os.path.join(config.netc_src_root, "examples")))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.netc_tools_dir, config.llvm_tools_dir]
llvm_config.add_tool_substitutions(["netc", "netc-opt"], tool_dirs)
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.netc_tools_dir, append_path=True)
