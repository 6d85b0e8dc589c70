//===- AST.cpp - Printing the .net syntax tree ----------------------------===//
//
// `netc -emit=ast`: one node per line, indented by depth, with its kind, its
// key fields and `@line:col`. Each source file gets a `File "path"` header,
// the main file first, then imported files in the order they were loaded.
//
//===----------------------------------------------------------------------===//

#include "frontend/AST.h"
#include "frontend/Frontend.h"
#include "frontend/Source.h"

#include <optional>

using netc::ast::Augment;
using netc::ast::Block;
using netc::ast::File;
using netc::ast::Import;
using netc::ast::Item;
using netc::ast::NetItem;
using netc::ast::Network;
using netc::ast::Option;
using netc::ast::Program;
using netc::ast::Setting;
using netc::ast::Stmt;
using netc::ast::Train;
using netc::ast::Value;

void netc::ProgramDeleter::operator()(ast::Program *program) const {
  delete program;
}

static void printString(llvm::StringRef str, llvm::raw_ostream &os) {
  os << '"';
  for (char c : str) {
    if (c == '"' || c == '\\')
      os << '\\';
    os << c;
  }
  os << '"';
}

void netc::ast::printValue(const Value &value, llvm::raw_ostream &os) {
  switch (value.kind) {
  case Value::Kind::Int:
  case Value::Kind::Float:
  case Value::Kind::Dims:
  case Value::Kind::Range:
  case Value::Kind::Ident:
    os << value.spelling;
    return;
  case Value::Kind::Bool:
    os << (value.boolValue ? "true" : "false");
    return;
  case Value::Kind::String:
    printString(value.str, os);
    return;
  case Value::Kind::Apply:
    os << value.spelling << '(';
    for (size_t i = 0, e = value.args.size(); i != e; ++i) {
      if (i)
        os << ", ";
      printValue(value.args[i], os);
    }
    os << ')';
    return;
  }
}

namespace {
/// Prints the tree; one method per node kind.
class Dumper {
public:
  Dumper(const llvm::SourceMgr *srcMgr, llvm::raw_ostream &os)
      : srcMgr(srcMgr), os(os) {
    if (srcMgr)
      lines.emplace(*srcMgr);
  }

  void dump(const Program &program);

private:
  void dump(const File &file);
  void dump(const Import &import);
  void dump(const Block &block);
  void dump(const Network &network);
  void dump(const NetItem &item);
  void dump(const Augment &augment);
  void dump(const Train &train);
  void dump(const Setting &setting);
  void dump(const Stmt &stmt);
  void dumpOperands(const std::vector<Value> &args,
                    const std::vector<Option> &options, bool bracketArgs);

  llvm::raw_ostream &indent() { return os.indent(2 * level); }
  void printLoc(llvm::SMLoc loc) {
    if (!srcMgr || !loc.isValid()) {
      os << '\n';
      return;
    }
    auto [line, col] = lines->getLineAndColumn(loc);
    os << " @" << line << ':' << col << '\n';
  }

  /// RAII indentation.
  struct Nest {
    Nest(Dumper &d) : d(d) { ++d.level; }
    ~Nest() { --d.level; }
    Dumper &d;
  };

  const llvm::SourceMgr *srcMgr;
  std::optional<netc::LineTable> lines;
  llvm::raw_ostream &os;
  unsigned level = 0;
};
} // namespace

void Dumper::dump(const Program &program) {
  os << "Program\n";
  Nest nest(*this);
  for (const auto &file : program.files)
    dump(*file);
}

void Dumper::dump(const File &file) {
  indent() << "File ";
  printString(file.path, os);
  os << '\n';
  Nest nest(*this);
  for (const Item &item : file.items) {
    if (auto *import = std::get_if<Import>(&item))
      dump(*import);
    else if (auto *block = std::get_if<Block>(&item))
      dump(*block);
    else if (auto *network = std::get_if<Network>(&item))
      dump(*network);
    else if (auto *augment = std::get_if<Augment>(&item))
      dump(*augment);
    else if (auto *train = std::get_if<Train>(&item))
      dump(*train);
  }
}

void Dumper::dump(const Import &import) {
  indent() << "Import ";
  printString(import.path, os);
  printLoc(import.loc);
}

void Dumper::dump(const Block &block) {
  indent() << "Block " << block.name << '(';
  for (size_t i = 0, e = block.params.size(); i != e; ++i)
    os << (i ? ", " : "") << block.params[i].name;
  os << ')';
  printLoc(block.loc);
  Nest nest(*this);
  for (const Stmt &stmt : block.body)
    dump(stmt);
}

void Dumper::dump(const Network &network) {
  indent() << "Network " << network.name;
  printLoc(network.loc);
  Nest nest(*this);
  for (const NetItem &item : network.items)
    dump(item);
}

void Dumper::dump(const NetItem &item) {
  auto keywordValue = [&](llvm::StringRef keyword) {
    indent() << keyword << ' ';
    printValue(item.value, os);
    printLoc(item.loc);
  };
  switch (item.kind) {
  case NetItem::Kind::Input:
    return keywordValue("Input");
  case NetItem::Kind::Classes:
    return keywordValue("Classes");
  case NetItem::Kind::Pretrained:
    indent() << "Pretrained";
    dumpOperands({item.value}, item.options, /*bracketArgs=*/false);
    printLoc(item.loc);
    return;
  case NetItem::Kind::Stmt:
    for (const Stmt &stmt : item.stmts)
      dump(stmt);
    return;
  case NetItem::Kind::Macro:
    break;
  }
  indent() << "Macro " << item.macroName;
  if (item.macroIsCall && !item.stmts.empty()) {
    const Stmt &call = item.stmts.front();
    os << " = " << call.callee << '(';
    for (size_t i = 0, e = call.args.size(); i != e; ++i) {
      if (i)
        os << ", ";
      printValue(call.args[i], os);
    }
    os << ')';
    printLoc(item.loc);
    return;
  }
  printLoc(item.loc);
  Nest nest(*this);
  for (const Stmt &stmt : item.stmts)
    dump(stmt);
}

void Dumper::dumpOperands(const std::vector<Value> &args,
                          const std::vector<Option> &options,
                          bool bracketArgs) {
  if (!args.empty()) {
    os << (bracketArgs ? " args=[" : " ");
    for (size_t i = 0, e = args.size(); i != e; ++i) {
      if (i)
        os << (bracketArgs ? ", " : " ");
      printValue(args[i], os);
    }
    if (bracketArgs)
      os << ']';
  }
  for (const Option &option : options) {
    os << ' ' << option.name << '=';
    printValue(option.value, os);
  }
}

void Dumper::dump(const Stmt &stmt) {
  switch (stmt.kind) {
  case Stmt::Kind::Layer:
    indent() << "Layer ";
    if (!stmt.label.empty())
      os << stmt.label << ": ";
    os << stmt.layerKind;
    dumpOperands(stmt.args, stmt.options, /*bracketArgs=*/true);
    printLoc(stmt.loc);
    return;
  case Stmt::Kind::Call:
    indent() << "Call " << stmt.callee << '(';
    for (size_t i = 0, e = stmt.args.size(); i != e; ++i) {
      if (i)
        os << ", ";
      printValue(stmt.args[i], os);
    }
    os << ')';
    printLoc(stmt.loc);
    return;
  case Stmt::Kind::Repeat: {
    indent() << "Repeat ";
    printValue(stmt.count, os);
    printLoc(stmt.loc);
    Nest nest(*this);
    for (const Stmt &child : stmt.body)
      dump(child);
    return;
  }
  }
}

void Dumper::dump(const Augment &augment) {
  indent() << "Augment " << augment.variant;
  printLoc(augment.loc);
  Nest nest(*this);
  for (const Setting &setting : augment.settings)
    dump(setting);
}

void Dumper::dump(const Train &train) {
  indent() << "Train";
  printLoc(train.loc);
  Nest nest(*this);
  for (const Setting &setting : train.settings)
    dump(setting);
}

void Dumper::dump(const Setting &setting) {
  indent() << "Setting " << setting.keyword;
  dumpOperands(setting.args, setting.options, /*bracketArgs=*/false);
  printLoc(setting.loc);
  Nest nest(*this);
  for (const Setting &child : setting.body)
    dump(child);
}

void netc::dumpProgram(const ast::Program &program, llvm::raw_ostream &os) {
  Dumper(program.srcMgr, os).dump(program);
}
