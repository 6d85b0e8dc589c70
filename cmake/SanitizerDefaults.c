/*===- SanitizerDefaults.c - default options of the sanitized builds ------===*
 *
 * Linked into every executable of a NETC_SANITIZE build (CMakeLists.txt), so
 * that the options hold however a program is started (lit, the build's own
 * netc runs, by hand), not only under scripts/test.sh.
 *
 * allow_user_poisoning=0: LLVM's headers, compiled into our instrumented
 * code, and its prebuilt uninstrumented libraries disagree about manual
 * poisoning of allocator memory (MLIR's SmallVectors report a false
 * use-after-poison at start-up). Real ASan checks are unaffected.
 *
 * LeakSanitizer suppressions: OpenMPI (data-parallel runs under mpirun)
 * keeps allocations of its own until exit, and so do fontconfig, cairo,
 * pango, GLib and libltdl (which loads PLplot's drivers) under PLplot's PNG
 * driver (`netrun plot`); a leak in netc's code still fails the run.
 *
 *===----------------------------------------------------------------------===*/

const char *__asan_default_options(void) {
  return "allow_user_poisoning=0:halt_on_error=1:detect_leaks=1";
}

const char *__lsan_default_suppressions(void) {
  return "leak:libmpi.so\n"
         "leak:libopen-pal.so\n"
         "leak:libopen-rte.so\n"
         "leak:libpmix.so\n"
         "leak:libevent\n"
         "leak:libhwloc.so\n"
         "leak:mca_\n"
         "leak:libfontconfig.so\n"
         "leak:libcairo.so\n"
         "leak:libpango\n"
         "leak:libglib-2.0.so\n"
         "leak:libgobject-2.0.so\n"
         "leak:libplplot.so\n"
         "leak:libltdl.so\n";
}

const char *__ubsan_default_options(void) {
  return "halt_on_error=1:print_stacktrace=1";
}

const char *__tsan_default_options(void) {
  return "halt_on_error=1:second_deadlock_stack=1";
}
