//===- Controls.h - control characters a terminal acts on -------*- C++ -*-===//
//
// One rule for what is printed escaped, or refused in a name: netrun's
// messages (io::printable), the plan loader's names, and netc's echo of a
// model's text (frontend/Source.cpp). Header-only: the compiler includes it
// without linking the runtime, as it does plan/Window.h.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_IO_CONTROLS_H
#define NETC_RUNTIME_IO_CONTROLS_H

#include <cstddef>
#include <string_view>

namespace netc::io {

/// The length in bytes of a control character at `text[i]` that a terminal
/// would act on, 0 if there is none: C0 but tab (and newline where
/// `keepNewlines`), DEL, and the C1 controls U+0080..U+009F in UTF-8
/// (U+009B is a CSI to some terminals).
inline size_t controlLength(std::string_view text, size_t i,
                            bool keepNewlines) {
  const auto b = static_cast<unsigned char>(text[i]);
  if ((b < 0x20 && b != '\t' && !(keepNewlines && b == '\n')) || b == 0x7f)
    return 1;
  if (b == 0xc2 && i + 1 < text.size() &&
      (static_cast<unsigned char>(text[i + 1]) & 0xe0) == 0x80)
    return 2;
  return 0;
}

} // namespace netc::io

#endif // NETC_RUNTIME_IO_CONTROLS_H
