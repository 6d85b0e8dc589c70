//===- FrontendTest.cpp - Lexer, parser and Sema unit tests ---------------===//
//
// The lexer's tokens (dims, ranges, hyphenated identifiers, line starts) and
// buildModel on in-memory buffers: naming rules, the default of every option,
// `pretrained`, and that errors give nullopt with a diagnostic.
//
//===----------------------------------------------------------------------===//

#include "frontend/Frontend.h"
#include "frontend/Lexer.h"
#include "frontend/Sema.h"
#include "frontend/Source.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"

#include "gtest/gtest.h"

#include <string>
#include <sys/stat.h>
#include <vector>

using namespace netc;

namespace {

//===----------------------------------------------------------------------===//
// Lexer
//===----------------------------------------------------------------------===//

/// Lexes `text` to the end; diagnostics go to `diags`.
struct Lexed {
  std::vector<Token> tokens;
  std::string diags;
};

Lexed lex(llvm::StringRef text) {
  Lexed result;
  llvm::SourceMgr srcMgr;
  llvm::raw_string_ostream os(result.diags);
  srcMgr.setDiagHandler(
      [](const llvm::SMDiagnostic &diag, void *ctx) {
        diag.print(nullptr, *static_cast<llvm::raw_string_ostream *>(ctx),
                   /*ShowColors=*/false);
      },
      &os);
  unsigned id = srcMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(text, "test.net"), llvm::SMLoc());
  Lexer lexer(srcMgr, id);
  while (true) {
    Token tok = lexer.cur();
    // Spellings point into the SourceMgr's buffer, which dies with it.
    tok.spelling = llvm::StringRef();
    result.tokens.push_back(tok);
    if (tok.is(TokenKind::Eof) || tok.is(TokenKind::Error))
      break;
    lexer.consume();
  }
  return result;
}

std::vector<TokenKind> kinds(const Lexed &lexed) {
  std::vector<TokenKind> out;
  for (const Token &tok : lexed.tokens)
    out.push_back(tok.kind);
  return out;
}

TEST(LexerTest, Punctuation) {
  Lexed l = lex("{ } ( ) , ; : =");
  EXPECT_EQ(kinds(l),
            (std::vector<TokenKind>{
                TokenKind::LBrace, TokenKind::RBrace, TokenKind::LParen,
                TokenKind::RParen, TokenKind::Comma, TokenKind::Semi,
                TokenKind::Colon, TokenKind::Equal, TokenKind::Eof}));
}

TEST(LexerTest, Dims) {
  Lexed l = lex("3x224x224 3x3 7");
  ASSERT_EQ(l.tokens.size(), 4u);
  EXPECT_EQ(l.tokens[0].kind, TokenKind::Dims);
  EXPECT_EQ(
      std::vector<int64_t>(l.tokens[0].dims.begin(), l.tokens[0].dims.end()),
      (std::vector<int64_t>{3, 224, 224}));
  EXPECT_EQ(l.tokens[1].kind, TokenKind::Dims);
  EXPECT_EQ(l.tokens[1].dims.size(), 2u);
  EXPECT_EQ(l.tokens[2].kind, TokenKind::Int);
  EXPECT_EQ(l.tokens[2].intValue, 7);
}

TEST(LexerTest, Range) {
  Lexed l = lex("256..512");
  ASSERT_EQ(l.tokens.size(), 2u);
  EXPECT_EQ(l.tokens[0].kind, TokenKind::Range);
  EXPECT_EQ(l.tokens[0].intValue, 256);
  EXPECT_EQ(l.tokens[0].intValue2, 512);
}

TEST(LexerTest, Numbers) {
  Lexed l = lex("0.5 .5 1e-4 5e-4 -3 -2.5 42 1E+2");
  ASSERT_EQ(l.tokens.size(), 9u);
  EXPECT_EQ(l.tokens[0].kind, TokenKind::Float);
  EXPECT_DOUBLE_EQ(l.tokens[0].floatValue, 0.5);
  EXPECT_DOUBLE_EQ(l.tokens[1].floatValue, 0.5);
  EXPECT_DOUBLE_EQ(l.tokens[2].floatValue, 1e-4);
  EXPECT_DOUBLE_EQ(l.tokens[3].floatValue, 5e-4);
  EXPECT_EQ(l.tokens[4].kind, TokenKind::Int);
  EXPECT_EQ(l.tokens[4].intValue, -3);
  EXPECT_EQ(l.tokens[5].kind, TokenKind::Float);
  EXPECT_DOUBLE_EQ(l.tokens[5].floatValue, -2.5);
  EXPECT_EQ(l.tokens[6].intValue, 42);
  EXPECT_EQ(l.tokens[7].kind, TokenKind::Float);
  EXPECT_DOUBLE_EQ(l.tokens[7].floatValue, 100.0);
  // The ends of the 32-bit floats: the largest (as numpy prints it), a
  // subnormal, the smallest, and zeros however written.
  l = lex("3.4028235e38 -1e-40 1.4e-45 0.0 -0.0 0e-400");
  ASSERT_EQ(l.tokens.size(), 7u) << l.diags;
  for (unsigned i = 0; i < 6; ++i)
    EXPECT_EQ(l.tokens[i].kind, TokenKind::Float) << i << ": " << l.diags;
}

TEST(LexerTest, HyphenatedIdentifiers) {
  Lexed l = lex("swwae-all fashion-mnist single-crop conv1.relu a-1 x_y");
  ASSERT_EQ(l.tokens.size(), 8u);
  for (unsigned i : {0u, 1u, 2u, 3u})
    EXPECT_EQ(l.tokens[i].kind, TokenKind::Ident) << i;
  // `-` followed by a digit is not part of the identifier: `a` then `-1`.
  EXPECT_EQ(l.tokens[4].kind, TokenKind::Ident);
  EXPECT_EQ(l.tokens[5].kind, TokenKind::Int);
  EXPECT_EQ(l.tokens[5].intValue, -1);
  EXPECT_EQ(l.tokens[6].kind, TokenKind::Ident);
}

TEST(LexerTest, HyphenatedIdentifierSpelling) {
  llvm::SourceMgr srcMgr;
  unsigned id = srcMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy("swwae-layerwise x", "t.net"),
      llvm::SMLoc());
  Lexer lexer(srcMgr, id);
  EXPECT_EQ(lexer.cur().spelling, "swwae-layerwise");
  EXPECT_EQ(lexer.peek().spelling, "x");
}

TEST(LexerTest, LineStarts) {
  Lexed l = lex("a b\n  c /* x\n */ d // e\nf");
  ASSERT_EQ(l.tokens.size(), 6u);
  EXPECT_TRUE(l.tokens[0].atLineStart);  // a
  EXPECT_FALSE(l.tokens[1].atLineStart); // b
  EXPECT_TRUE(l.tokens[2].atLineStart);  // c
  EXPECT_TRUE(l.tokens[3].atLineStart);  // d: a comment spanned a newline
  EXPECT_TRUE(l.tokens[4].atLineStart);  // f
}

TEST(LexerTest, Strings) {
  Lexed l = lex(R"("a \"b\" \\ c")");
  ASSERT_EQ(l.tokens.size(), 2u);
  EXPECT_EQ(l.tokens[0].kind, TokenKind::String);
  EXPECT_EQ(l.tokens[0].stringValue, R"(a "b" \ c)");
}

TEST(LexerTest, Errors) {
  struct Case {
    const char *text;
    const char *message;
  };
  const Case cases[] = {
      {"\"abc\n\"", "unterminated string"},
      {"/* never closed", "unterminated block comment"},
      {"@", "unexpected character '@'"},
      {"3xa", "malformed number '3xa'"},
      {"99999999999999999999999", "is too large"},
      {"\"\\n\"", "unknown escape sequence"},
      {"256..", "expected an integer after '..'"},
      {"1e999", "out of range"},
      {"1e39", "is beyond the 32-bit floats the trainer computes in"},
      {"-3.5e38", "is beyond the 32-bit floats"},
      {"1e-400", "is below the smallest 32-bit float (1.4e-45); it would be 0"},
      {"5e-46", "is below the smallest 32-bit float"},
  };
  for (const Case &c : cases) {
    Lexed l = lex(c.text);
    EXPECT_EQ(l.tokens.back().kind, TokenKind::Error) << c.text;
    EXPECT_NE(l.diags.find(c.message), std::string::npos)
        << c.text << ": " << l.diags;
  }
}

//===----------------------------------------------------------------------===//
// buildModel
//===----------------------------------------------------------------------===//

/// Parses and checks `text`; diagnostics are collected in `diags`.
struct Built {
  std::optional<Model> model;
  std::string diags;
  bool parsed = false;
};

Built build(llvm::StringRef text) {
  Built result;
  llvm::SourceMgr srcMgr;
  llvm::raw_string_ostream os(result.diags);
  srcMgr.setDiagHandler(
      [](const llvm::SMDiagnostic &diag, void *ctx) {
        diag.print(nullptr, *static_cast<llvm::raw_string_ostream *>(ctx),
                   /*ShowColors=*/false);
      },
      &os);
  ProgramPtr program = parseProgramFromBuffer(srcMgr, "dir/test.net", text);
  if (!program)
    return result;
  result.parsed = true;
  result.model = buildModel(*program, srcMgr);
  return result;
}

/// `path` made absolute against the working directory, as Sema resolves
/// paths in a buffer that is not a file.
std::string absolute(llvm::StringRef path) {
  llvm::SmallString<256> full(path);
  EXPECT_FALSE(llvm::sys::fs::make_absolute(full));
  return std::string(full);
}

/// All layers in network order.
std::vector<const Layer *> layers(const Model &model) {
  std::vector<const Layer *> out;
  for (const Stage &stage : model.network.body) {
    if (stage.macro)
      for (const Layer &layer : stage.macro->layers)
        out.push_back(&layer);
    if (stage.layer)
      out.push_back(&*stage.layer);
  }
  return out;
}

std::vector<std::string> names(const Model &model) {
  std::vector<std::string> out;
  for (const Layer *layer : layers(model))
    out.push_back(layer->name);
  return out;
}

const char *kVgg = R"(
block vgg(c, n) {
  repeat n { conv c kernel=3 pad=1; relu }
  maxpool kernel=2 stride=2
}
network vgg16 {
  input 3x224x224; classes 1000
  macro conv1 = vgg(64, 2); macro conv2 = vgg(128, 2); macro conv3 = vgg(256, 3)
  macro conv4 = vgg(512, 3); macro conv5 = vgg(512, 3)
  fc6: fc 4096; relu; dropout 0.5
  fc7: fc 4096; relu; dropout 0.5
  fc8: fc 1000
}
)";

TEST(SemaTest, VggNames) {
  Built b = build(kVgg);
  ASSERT_TRUE(b.model) << b.diags;
  const Network &net = b.model->network;
  EXPECT_EQ(net.name, "vgg16");
  EXPECT_EQ(net.input, (std::array<int64_t, 3>{3, 224, 224}));
  EXPECT_EQ(net.classes, 1000);
  ASSERT_EQ(net.body.size(), 5u + 7u);
  ASSERT_TRUE(net.body[2].macro);
  EXPECT_EQ(net.body[2].macro->name, "conv3");
  std::vector<std::string> conv3;
  for (const Layer &layer : net.body[2].macro->layers)
    conv3.push_back(layer.name);
  EXPECT_EQ(conv3, (std::vector<std::string>{
                       "conv3_1", "conv3.relu1", "conv3_2", "conv3.relu2",
                       "conv3_3", "conv3.relu3", "conv3.maxpool"}));
  std::vector<std::string> tail;
  for (size_t i = 5; i < net.body.size(); ++i) {
    ASSERT_TRUE(net.body[i].layer);
    tail.push_back(net.body[i].layer->name);
  }
  EXPECT_EQ(tail, (std::vector<std::string>{"fc6", "relu1", "dropout1", "fc7",
                                            "relu2", "dropout2", "fc8"}));
  EXPECT_EQ(net.body[2].macro->layers[0].outChannels, 256);
  EXPECT_EQ(layers(*b.model).size(), 13u * 2 + 5 + 7);
}

TEST(SemaTest, MacroNamingRules) {
  Built b = build(R"(
network n {
  input 3x32x32; classes 10
  macro block1 { conv 8; relu; maxpool }
  macro mix { conv 8; fc 4; relu; relu }
  macro head { fc 10; dropout; fc 10 }
  macro single { fc 10 }
  macro named { mine: conv 8; conv 8 }
  conv 4; relu; conv 4
}
)");
  ASSERT_TRUE(b.model) << b.diags;
  EXPECT_EQ(names(*b.model),
            (std::vector<std::string>{
                // One conv: the macro's name; other kinds: `M.<kind>`.
                "block1", "block1.relu", "block1.maxpool",
                // With a conv, fcs are named like other kinds.
                "mix", "mix.fc", "mix.relu1", "mix.relu2",
                // Without convs, fcs follow the conv rule.
                "head_1", "head.dropout", "head_2", "single",
                // A label wins but still counts in the numbering.
                "mine", "named_2",
                // Outside macros: `<kind><n>`.
                "conv1", "relu1", "conv2"}));
  const Network &net = b.model->network;
  EXPECT_EQ(net.body.size(), 5u + 3u);
  EXPECT_EQ(net.body[0].macro->loc.line, 4u);
  EXPECT_EQ(net.body[0].macro->loc.col, 9u);
}

TEST(SemaTest, Locations) {
  Built b =
      build("network n {\n  input 1x28x28; classes 10\n  head: fc 10\n}\n");
  ASSERT_TRUE(b.model) << b.diags;
  const Layer &fc = *b.model->network.body[0].layer;
  ASSERT_TRUE(fc.loc.file);
  EXPECT_EQ(*fc.loc.file, "dir/test.net");
  EXPECT_EQ(fc.loc.line, 3u);
  EXPECT_EQ(fc.loc.col, 3u); // the label
  EXPECT_EQ(b.model->network.inputLoc.line, 2u);
  EXPECT_EQ(b.model->network.classesLoc.col, 18u);
}

TEST(SemaTest, Defaults) {
  Built b = build(R"(
network n {
  input 1x28x28; classes 10
  conv 8; relu; maxpool; avgpool 3; dropout; lrn; batchnorm; flatten; fc 10
}
)");
  ASSERT_TRUE(b.model) << b.diags;
  std::vector<const Layer *> l = layers(*b.model);
  ASSERT_EQ(l.size(), 9u);
  EXPECT_FALSE(b.model->augment.present);
  EXPECT_EQ(b.model->augment.variant, "none");
  EXPECT_FALSE(b.model->train.present);

  const Layer &conv = *l[0];
  EXPECT_EQ(conv.kind, LayerKind::Conv);
  EXPECT_EQ(conv.outChannels, 8);
  EXPECT_EQ(conv.kernel, (std::array<int64_t, 2>{3, 3}));
  EXPECT_EQ(conv.stride, (std::array<int64_t, 2>{1, 1}));
  EXPECT_EQ(conv.pad, (std::array<int64_t, 2>{0, 0}));
  EXPECT_EQ(conv.groups, 1);
  EXPECT_TRUE(conv.hasBias);
  EXPECT_EQ(conv.weight.init.kind, InitSpec::Kind::Gaussian);
  EXPECT_DOUBLE_EQ(conv.weight.init.value, 0.01);
  EXPECT_DOUBLE_EQ(conv.weight.init.mean, 0.0);
  EXPECT_DOUBLE_EQ(conv.weight.lrMult, 1.0);
  EXPECT_DOUBLE_EQ(conv.weight.decayMult, 1.0);
  EXPECT_EQ(conv.bias.init.kind, InitSpec::Kind::Constant);
  EXPECT_DOUBLE_EQ(conv.bias.init.value, 0.0);
  EXPECT_DOUBLE_EQ(conv.bias.lrMult, 2.0);
  EXPECT_DOUBLE_EQ(conv.bias.decayMult, 0.0);

  const Layer &maxpool = *l[2];
  EXPECT_EQ(maxpool.kind, LayerKind::MaxPool);
  EXPECT_EQ(maxpool.kernel, (std::array<int64_t, 2>{2, 2}));
  EXPECT_EQ(maxpool.stride, (std::array<int64_t, 2>{2, 2}));
  EXPECT_EQ(maxpool.pad, (std::array<int64_t, 2>{0, 0}));
  EXPECT_FALSE(maxpool.ceilMode);
  const Layer &avgpool = *l[3];
  EXPECT_EQ(avgpool.kind, LayerKind::AvgPool);
  EXPECT_EQ(avgpool.kernel, (std::array<int64_t, 2>{3, 3}));
  EXPECT_EQ(avgpool.stride, (std::array<int64_t, 2>{3, 3})); // = kernel

  EXPECT_DOUBLE_EQ(l[4]->ratio, 0.5);

  const Layer &lrn = *l[5];
  EXPECT_EQ(lrn.lrnSize, 5);
  EXPECT_DOUBLE_EQ(lrn.lrnAlpha, 1e-4);
  EXPECT_DOUBLE_EQ(lrn.lrnBeta, 0.75);
  EXPECT_DOUBLE_EQ(lrn.lrnK, 1.0);

  const Layer &bn = *l[6];
  EXPECT_DOUBLE_EQ(bn.bnEps, 1e-5);
  EXPECT_DOUBLE_EQ(bn.bnMomentum, 0.9);
  EXPECT_EQ(bn.weight.init.kind, InitSpec::Kind::Constant);
  EXPECT_DOUBLE_EQ(bn.weight.init.value, 1.0);
  EXPECT_DOUBLE_EQ(bn.weight.lrMult, 1.0);
  EXPECT_DOUBLE_EQ(bn.weight.decayMult, 0.0);
  EXPECT_EQ(bn.bias.init.kind, InitSpec::Kind::Constant);
  EXPECT_DOUBLE_EQ(bn.bias.init.value, 0.0);
  EXPECT_DOUBLE_EQ(bn.bias.lrMult, 1.0);
  EXPECT_DOUBLE_EQ(bn.bias.decayMult, 0.0);

  EXPECT_EQ(l[7]->kind, LayerKind::Flatten);
  const Layer &fc = *l[8];
  EXPECT_EQ(fc.kind, LayerKind::FC);
  EXPECT_EQ(fc.outChannels, 10);
  EXPECT_EQ(fc.weight.init.kind, InitSpec::Kind::Gaussian);
  EXPECT_DOUBLE_EQ(fc.bias.lrMult, 2.0);
}

TEST(SemaTest, ExplicitOptions) {
  Built b = build(R"(
network n {
  input 1x28x28; classes 10
  conv 8 kernel=3x5 stride=2 pad=1x2 groups=2 bias=false init=gaussian(0.1, 0.5) lr_mult=3 decay_mult=4
  maxpool 3 stride=2 pad=1 ceil=true
  dropout ratio=0.25
  lrn size=3 alpha=2e-4 beta=0.5 k=2
  batchnorm eps=1e-3 momentum=0.99 init=constant(2) bias_init=constant(1)
  fc 10 init=file("w.safetensors", "x.y") bias_init=constant(-1) bias_lr_mult=5 bias_decay_mult=6
}
)");
  ASSERT_TRUE(b.model) << b.diags;
  std::vector<const Layer *> l = layers(*b.model);
  ASSERT_EQ(l.size(), 6u);
  EXPECT_EQ(l[0]->kernel, (std::array<int64_t, 2>{3, 5}));
  EXPECT_EQ(l[0]->stride, (std::array<int64_t, 2>{2, 2}));
  EXPECT_EQ(l[0]->pad, (std::array<int64_t, 2>{1, 2}));
  EXPECT_EQ(l[0]->groups, 2);
  EXPECT_FALSE(l[0]->hasBias);
  EXPECT_DOUBLE_EQ(l[0]->weight.init.value, 0.1);
  EXPECT_DOUBLE_EQ(l[0]->weight.init.mean, 0.5);
  EXPECT_DOUBLE_EQ(l[0]->weight.lrMult, 3);
  EXPECT_DOUBLE_EQ(l[0]->weight.decayMult, 4);
  EXPECT_EQ(l[1]->kernel, (std::array<int64_t, 2>{3, 3}));
  EXPECT_EQ(l[1]->stride, (std::array<int64_t, 2>{2, 2}));
  EXPECT_TRUE(l[1]->ceilMode);
  EXPECT_DOUBLE_EQ(l[2]->ratio, 0.25);
  EXPECT_EQ(l[3]->lrnSize, 3);
  EXPECT_DOUBLE_EQ(l[3]->lrnK, 2);
  EXPECT_DOUBLE_EQ(l[4]->bnEps, 1e-3);
  EXPECT_DOUBLE_EQ(l[4]->bnMomentum, 0.99);
  EXPECT_DOUBLE_EQ(l[4]->weight.init.value, 2);
  EXPECT_DOUBLE_EQ(l[4]->bias.init.value, 1);
  EXPECT_EQ(l[5]->weight.init.kind, InitSpec::Kind::File);
  // Paths are relative to the .net file's directory, and made absolute.
  EXPECT_EQ(l[5]->weight.init.path, absolute("dir/w.safetensors"));
  EXPECT_EQ(l[5]->weight.init.key, "x.y");
  EXPECT_DOUBLE_EQ(l[5]->bias.init.value, -1);
  EXPECT_DOUBLE_EQ(l[5]->bias.lrMult, 5);
  EXPECT_DOUBLE_EQ(l[5]->bias.decayMult, 6);
}

TEST(SemaTest, Pretrained) {
  Built b = build(R"(
network n {
  input 1x28x28; classes 10
  pretrained "vgg.safetensors"
  macro conv1 { conv 8 init=gaussian(1); relu; maxpool }
  batchnorm
  fc 10 bias=false
}
)");
  ASSERT_TRUE(b.model) << b.diags;
  std::vector<const Layer *> l = layers(*b.model);
  ASSERT_EQ(l.size(), 5u);
  // An explicit init stays; the other parameters come from the file.
  EXPECT_EQ(l[0]->weight.init.kind, InitSpec::Kind::Gaussian);
  EXPECT_EQ(l[0]->bias.init.kind, InitSpec::Kind::File);
  EXPECT_EQ(l[0]->bias.init.path, absolute("dir/vgg.safetensors"));
  EXPECT_EQ(l[0]->bias.init.key, "conv1.bias");
  EXPECT_EQ(l[3]->weight.init.kind, InitSpec::Kind::File);
  // A batch norm's four tensors, under the names its parameters have.
  EXPECT_EQ(l[3]->weight.init.key, "batchnorm1.scale");
  EXPECT_EQ(l[3]->bias.init.key, "batchnorm1.shift");
  EXPECT_EQ(l[3]->runningMean.init.key, "batchnorm1.mean");
  EXPECT_EQ(l[3]->runningVar.init.key, "batchnorm1.var");
  EXPECT_EQ(l[4]->weight.init.key, "fc1.weight");
  EXPECT_NE(l[4]->bias.init.kind, InitSpec::Kind::File); // no bias
}

TEST(SemaTest, BlocksAndRepeat) {
  Built b = build(R"(
block inner(c, k) { conv c kernel=k init=gaussian(c) }
block outer(c, n) { repeat n { inner(c, 1x3) } }
network n {
  input 1x28x28; classes 10
  macro m = outer(4, 3)
  repeat 0 { relu }
  fc 10
}
)");
  ASSERT_TRUE(b.model) << b.diags;
  std::vector<const Layer *> l = layers(*b.model);
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l[2]->name, "m_3");
  EXPECT_EQ(l[2]->kernel, (std::array<int64_t, 2>{1, 3}));
  EXPECT_DOUBLE_EQ(l[2]->weight.init.value, 4);
}

TEST(SemaTest, AugmentAndTrain) {
  Built b = build(R"(
network n {
  input 3x32x32; classes 10
  macro conv1 { conv 8; relu; maxpool }
  macro conv2 { conv 8; relu; maxpool }
  fc6: fc 10
}
augment swwae-all { lambda 0.1; gamma conv1=1e-3 conv2=0; from fc6; position 1x0; init gaussian(0.001) }
train {
  data cifar10 { path "c"; subset 5; test-subset 6; mirror; crop 32 pad 4; mean 1 2 3; std 4 5 6 }
  phase a { decoder layerwise; freeze encoder conv1 fc6 conv2.relu; sgd lr=0.5 momentum=0.8 decay=0.1; batch 16; epochs 3; steps 7; lambda 2; lr step 0.5 every 2 }
  phase b { lr cosine min 0.001 }
  eval full dense
}
)");
  ASSERT_TRUE(b.model) << b.diags;
  const AugmentSpec &a = b.model->augment;
  EXPECT_TRUE(a.present);
  EXPECT_EQ(a.variant, "swwae-all");
  EXPECT_EQ(a.lambda, 0.1);
  ASSERT_EQ(a.gammas.size(), 2u);
  EXPECT_EQ(a.gammas[0].macro, "conv1");
  EXPECT_DOUBLE_EQ(a.gammas[0].weight, 1e-3);
  EXPECT_EQ(a.from, "fc6");
  EXPECT_EQ(a.position, (std::array<int64_t, 2>{1, 0}));
  ASSERT_TRUE(a.decoderInit);
  EXPECT_DOUBLE_EQ(a.decoderInit->value, 0.001);

  const TrainSpec &t = b.model->train;
  EXPECT_TRUE(t.present);
  EXPECT_EQ(t.data.kind, "cifar10");
  EXPECT_EQ(t.data.path, absolute("dir/c"));
  EXPECT_EQ(t.data.subset, 5);
  EXPECT_EQ(t.data.testSubset, 6);
  EXPECT_TRUE(t.data.mirror);
  EXPECT_EQ(t.data.crop, 32);
  EXPECT_EQ(t.data.cropPad, 4);
  EXPECT_EQ(t.data.scale, (std::array<int64_t, 2>{0, 0}));
  EXPECT_EQ(t.data.mean, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(t.data.std, (std::vector<double>{4, 5, 6}));
  ASSERT_EQ(t.phases.size(), 2u);
  const PhaseSpec &p = t.phases[0];
  EXPECT_EQ(p.name, "a");
  EXPECT_EQ(p.decoder, "layerwise");
  EXPECT_EQ(p.freeze, (std::vector<std::string>{"encoder", "conv1", "fc6",
                                                "conv2.relu"}));
  EXPECT_EQ(p.freezeLocs.size(), 4u);
  EXPECT_DOUBLE_EQ(p.lr, 0.5);
  EXPECT_DOUBLE_EQ(p.momentum, 0.8);
  EXPECT_DOUBLE_EQ(p.decay, 0.1);
  EXPECT_EQ(p.batch, 16);
  EXPECT_EQ(p.epochs, 3);
  EXPECT_EQ(p.maxSteps, 7);
  EXPECT_EQ(p.lambda, 2.0);
  EXPECT_EQ(p.lrPolicy, "step");
  EXPECT_DOUBLE_EQ(p.lrGamma, 0.5);
  EXPECT_EQ(p.lrEvery, 2);
  const PhaseSpec &q = t.phases[1];
  EXPECT_EQ(q.decoder, "default");
  EXPECT_EQ(q.batch, 64);
  EXPECT_EQ(q.epochs, 1);
  EXPECT_EQ(q.lrPolicy, "cosine");
  EXPECT_DOUBLE_EQ(q.lrMin, 0.001);
  EXPECT_FALSE(q.lambda);
  EXPECT_EQ(t.evalSchemes, (std::vector<std::string>{"full", "dense"}));
}

TEST(SemaTest, AugmentVariants) {
  llvm::ArrayRef<llvm::StringRef> v = augmentVariants();
  ASSERT_EQ(v.size(), 7u);
  EXPECT_EQ(v.front(), "none");
  EXPECT_EQ(v[3], "sae-layerwise");
  EXPECT_EQ(v.back(), "swwae-layerwise");
  for (llvm::StringRef name : v)
    EXPECT_TRUE(isAugmentVariant(name));
  EXPECT_FALSE(isAugmentVariant("swae-all"));
  EXPECT_FALSE(isAugmentVariant(""));
}

TEST(SemaTest, ErrorsGiveNullopt) {
  struct Case {
    const char *text;
    const char *message;
  };
  const Case cases[] = {
      {"network n { input 1x2x2; classes 2; convv 3 }",
       "unknown layer 'convv'"},
      {"network n { input 1x2x2; classes 2; conv 3 kernal=3 }",
       "unknown option 'kernal' for layer 'conv'"},
      {"network n { input 1x2x2; classes 2; dropout 1 }",
       "dropout ratio must be in [0, 1), got 1"},
      {"network n { input 1x2x2; classes 2; fc 2; fc 2 bias=1 }",
       "expects true or false, got integer 1"},
      {"network n { classes 2; fc 2 }", "has no 'input' statement"},
      {"network n { input 1x2x2; fc 2 }", "has no 'classes' statement"},
      {"network n { input 1x2x2; classes 2 }", "network 'n' has no layers"},
      {"block a(x) { a(x) }\nnetwork n { input 1x2x2; classes 2; a(1) }",
       "recursive block call: 'a' calls itself"},
      {"network n { input 1x2x2; classes 2; r: relu; r: relu }",
       "duplicate layer name 'r'"},
      {"network n { input 1x2x2; classes 2; fc 2 }\naugment none { gamma x=1 }",
       "gamma names macro-layer 'x', which does not exist"},
      {"network n { input 1x2x2; classes 2; fc 2 }\ntrain { phase p { epochs "
       "-1 } }",
       "'epochs' must be positive, got -1"},
      {"network n { input 1x2x2; classes 2; repeat \"3\" { relu } }",
       "repeat count must be an integer, got string"},
  };
  for (const Case &c : cases) {
    Built b = build(c.text);
    EXPECT_TRUE(b.parsed) << c.text << "\n" << b.diags;
    EXPECT_FALSE(b.model) << c.text;
    EXPECT_NE(b.diags.find(c.message), std::string::npos) << c.text << "\n"
                                                          << b.diags;
  }
}

TEST(SemaTest, ReportsSeveralErrors) {
  Built b = build("network n {\n  input 1x2x2; classes 2\n  convv 1\n  "
                  "fc 2 kernal=1\n  dropout 2\n}\n");
  EXPECT_FALSE(b.model);
  EXPECT_NE(b.diags.find("test.net:3:3: error: unknown layer"),
            std::string::npos)
      << b.diags;
  EXPECT_NE(b.diags.find("test.net:4:8: error: unknown option"),
            std::string::npos)
      << b.diags;
  EXPECT_NE(b.diags.find("test.net:5:11: error: dropout ratio"),
            std::string::npos)
      << b.diags;
}

TEST(SemaTest, ErrorInRepeatedBlockReportedOnce) {
  Built b = build("block b() { convv 1 }\nnetwork n { input 1x2x2; classes 2; "
                  "repeat 50 { b() } }\n");
  EXPECT_FALSE(b.model);
  size_t first = b.diags.find("unknown layer");
  ASSERT_NE(first, std::string::npos);
  EXPECT_EQ(b.diags.find("unknown layer", first + 1), std::string::npos)
      << b.diags;
}

TEST(ParserTest, ParseErrorsGiveNull) {
  const char *cases[] = {
      "network n {",
      "network n { input }",
      "block b(",
      "conv 3",
      "network n { a: }",
      "network n { fc 2 ) }",
      "augment",
      "train { phase p { batch 1 }",
      "import \"does-not-exist.net\"",
  };
  for (const char *text : cases) {
    Built b = build(text);
    EXPECT_FALSE(b.parsed) << text;
    EXPECT_NE(b.diags.find("error:"), std::string::npos) << text;
  }
}

TEST(ParserTest, DeepNestingIsAnError) {
  std::string text = "network n { input 1x2x2; classes 2; ";
  for (int i = 0; i < 1000; ++i)
    text += "repeat 1 { ";
  Built b = build(text);
  EXPECT_FALSE(b.parsed);
  EXPECT_NE(b.diags.find("nesting is too deep"), std::string::npos);
  text = "network n { input 1x2x2; classes 2; conv 1 init=";
  for (int i = 0; i < 1000; ++i)
    text += "f(";
  b = build(text);
  EXPECT_FALSE(b.parsed);
  EXPECT_NE(b.diags.find("nesting is too deep"), std::string::npos);
}

TEST(ParserTest, DumpIsUnexpanded) {
  llvm::SourceMgr srcMgr;
  srcMgr.setDiagHandler([](const llvm::SMDiagnostic &, void *) {});
  ProgramPtr program = parseProgramFromBuffer(
      srcMgr, "t.net",
      "block b(c) { repeat c { relu } }\nnetwork n {\n  input 1x2x2\n  "
      "macro m = b(2)\n}\n");
  ASSERT_TRUE(program);
  std::string out;
  llvm::raw_string_ostream os(out);
  dumpProgram(*program, os);
  EXPECT_EQ(out, "Program\n"
                 "  File \"t.net\"\n"
                 "    Block b(c) @1:1\n"
                 "      Repeat c @1:14\n"
                 "        Layer relu @1:25\n"
                 "    Network n @2:1\n"
                 "      Input 1x2x2 @3:3\n"
                 "      Macro m = b(2) @4:3\n");
}

TEST(SemaTest, SettingRanges) {
  auto withPhase = [](const std::string &settings) {
    return build("network n { input 1x28x28; classes 10; fc 10 }\n"
                 "train { phase p { " +
                 settings + " } }\n");
  };
  Built ok = withPhase("batch " + std::to_string(sema::kMaxBatch) +
                       "; epochs " + std::to_string(sema::kMaxEpochs) +
                       "; steps " + std::to_string(sema::kMaxSteps));
  ASSERT_TRUE(ok.model) << ok.diags;
  EXPECT_EQ(ok.model->train.phases[0].batch, sema::kMaxBatch);
  for (const char *bad :
       {"batch 1048577", "epochs 1000001", "steps 1000000001",
        "batch 9223372036854775807", "lr step 0.5 every 1000001"}) {
    Built b = withPhase(bad);
    EXPECT_FALSE(b.model) << bad;
    EXPECT_NE(b.diags.find("is too large (at most"), std::string::npos)
        << b.diags;
  }
  Built input = build("network n { input 65536x65536x65536; classes 10; "
                      "fc 10 }\n");
  EXPECT_FALSE(input.model);
  EXPECT_NE(input.diags.find("test.net:1:19: error: input 65536x65536x65536 "
                             "is too large"),
            std::string::npos)
      << input.diags;
}

TEST(SemaTest, DataShapeChecks) {
  auto withData = [](const std::string &input, const std::string &data) {
    return build("network n { input " + input +
                 "; classes 10; fc 10 }\ntrain { data " + data + " }\n");
  };
  Built ok =
      withData("3x40x40", "cifar10 { crop 40 pad 4; mean 1 2 3; std 4 }");
  EXPECT_TRUE(ok.model) << ok.diags;
  ok = withData("3x224x224", "images { path \"f\"; crop 224; mean 1 2 3 }");
  EXPECT_TRUE(ok.model) << ok.diags;
  ok = withData("3x224x224",
                "images { path \"f\"; scale 240..256; eval-scale 250; crop "
                "224; channels bgr; workers 2; skip-bad }");
  ASSERT_TRUE(ok.model) << ok.diags;
  const DataSpec &img = ok.model->train.data;
  EXPECT_EQ(img.scale, (std::array<int64_t, 2>{240, 256}));
  EXPECT_EQ(img.evalScale, 250);
  EXPECT_EQ(img.channelOrder, "bgr");
  EXPECT_EQ(img.workers, 2);
  EXPECT_TRUE(img.skipBad);

  Built b = withData("1x28x28", "mnist { crop 29 }");
  EXPECT_NE(b.diags.find("test.net:2:27: error: crop 29 is larger than the "
                         "28x28 images of 'mnist'; the largest crop is 28"),
            std::string::npos)
      << b.diags;
  b = withData("1x32x32", "mnist { crop 32 pad 2 }");
  EXPECT_TRUE(b.model) << b.diags;
  b = withData("3x32x32", "cifar10 { crop 28 }");
  EXPECT_NE(b.diags.find("crop 28 makes 28x28 images but the network input "
                         "is 32x32"),
            std::string::npos)
      << b.diags;
  b = withData("3x32x32", "cifar10 { mean 1 2 }");
  EXPECT_NE(b.diags.find("test.net:2:24: error: 'mean' has 2 values but the "
                         "network input has 3 channels"),
            std::string::npos)
      << b.diags;
}

TEST(SemaTest, LocationsOnALongLine) {
  std::string text = "network n { input 1x2x2; classes 2; ";
  for (int i = 0; i < 1000; ++i)
    text += "relu; ";
  text += "fc 2 }\n";
  Built b = build(text);
  ASSERT_TRUE(b.model) << b.diags;
  std::vector<const Layer *> l = layers(*b.model);
  ASSERT_EQ(l.size(), 1001u);
  EXPECT_EQ(l[999]->loc.line, 1u);
  EXPECT_EQ(l[999]->loc.col, 37u + 999 * 6);
  EXPECT_EQ(l[1000]->loc.col, 37u + 1000 * 6);
}

//===----------------------------------------------------------------------===//
// Source text
//===----------------------------------------------------------------------===//

TEST(SourceTest, LineTableMatchesSourceMgr) {
  llvm::SourceMgr srcMgr;
  llvm::StringRef text = "ab\n\n\tcd e\r\nfgh\n  i";
  unsigned id = srcMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(text, "t.net"), llvm::SMLoc());
  const char *start = srcMgr.getMemoryBuffer(id)->getBufferStart();
  LineTable lines(srcMgr);
  for (size_t i = 0; i <= text.size(); ++i) {
    // SourceMgr counts the column of a CRLF's LF from the CR; no token
    // starts there.
    if (i && text[i - 1] == '\r')
      continue;
    llvm::SMLoc loc = llvm::SMLoc::getFromPointer(start + i);
    EXPECT_EQ(lines.getLineAndColumn(loc), srcMgr.getLineAndColumn(loc))
        << "offset " << i;
    EXPECT_EQ(lines.getLineAndColumn(loc, id), srcMgr.getLineAndColumn(loc))
        << "offset " << i;
  }
  EXPECT_EQ(lines.getLineAndColumn(llvm::SMLoc()),
            (std::pair<unsigned, unsigned>{0, 0}));
}

TEST(SourceTest, NormalizeSource) {
  auto normalize = [](llvm::StringRef text) {
    return normalizeSource(llvm::MemoryBuffer::getMemBufferCopy(text, "t.net"))
        ->getBuffer()
        .str();
  };
  EXPECT_EQ(normalize("\xEF\xBB\xBFnetwork"), "network");
  EXPECT_EQ(normalize("a\rb\r\nc\n\rd\r"), "a\nb\r\nc\n\nd\n");
  EXPECT_EQ(normalize("x\xEF\xBB\xBF"), "x\xEF\xBB\xBF");
  // Nothing to do: the same buffer comes back.
  auto buffer = llvm::MemoryBuffer::getMemBufferCopy("a\r\nb\n", "t.net");
  const llvm::MemoryBuffer *before = buffer.get();
  EXPECT_EQ(normalizeSource(std::move(buffer)).get(), before);
}

TEST(SourceTest, BomAndCarriageReturns) {
  Built b = build("\xEF\xBB\xBFnetwork n {\r  input 1x2x2\r  classes 2\r\r  "
                  "convv 1\r}\r");
  EXPECT_FALSE(b.model);
  EXPECT_NE(b.diags.find("test.net:5:3: error: unknown layer 'convv'"),
            std::string::npos)
      << b.diags;
}

/// Reads `path` with readSourceFile; "" on success, else the message.
std::string readError(const llvm::Twine &path) {
  auto buffer = readSourceFile(path.str());
  if (buffer)
    return "";
  return llvm::toString(buffer.takeError());
}

TEST(SourceTest, ReadSourceFileTakesRegularFilesOnly) {
  llvm::SmallString<128> dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("netc-source", dir));
  auto cleanup =
      llvm::make_scope_exit([&] { llvm::sys::fs::remove_directories(dir); });

  EXPECT_EQ(readError("/dev/zero"),
            "it is a character device, not a regular file");
  EXPECT_EQ(readError(dir), "it is a directory, not a regular file");
  llvm::SmallString<128> fifo(dir);
  llvm::sys::path::append(fifo, "fifo.net");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(readError(fifo), "it is a FIFO, not a regular file");
  llvm::SmallString<128> missing(dir);
  llvm::sys::path::append(missing, "missing.net");
  EXPECT_NE(readError(missing), "");

  // Too large: checked from the size, before reading.
  llvm::SmallString<128> big(dir);
  llvm::sys::path::append(big, "big.net");
  int fd;
  ASSERT_FALSE(llvm::sys::fs::openFileForWrite(big, fd));
  ASSERT_FALSE(llvm::sys::fs::resize_file(fd, kMaxSourceBytes + 1));
  llvm::sys::fs::closeFile(fd);
  EXPECT_EQ(readError(big), "it is too large (67108865 bytes; at most "
                            "67108864)");
  ASSERT_FALSE(llvm::sys::fs::openFileForWrite(big, fd));
  ASSERT_FALSE(llvm::sys::fs::resize_file(fd, kMaxSourceBytes));
  llvm::sys::fs::closeFile(fd);
  EXPECT_EQ(readError(big), "");

  // A regular file is read, named by its path and normalised.
  llvm::SmallString<128> file(dir);
  llvm::sys::path::append(file, "cr.net");
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(file, ec);
    ASSERT_FALSE(ec);
    os << "\xEF\xBB\xBF"
       << "a\rb";
  }
  auto buffer = readSourceFile(file);
  ASSERT_TRUE(bool(buffer));
  EXPECT_EQ((*buffer)->getBuffer(), "a\nb");
  EXPECT_EQ((*buffer)->getBufferIdentifier(), file);
}

/// The diagnostic at `column` (0-based) of the one-line buffer `line`, as
/// printDiagnostic prints it.
std::string printAt(llvm::StringRef line, size_t column) {
  llvm::SourceMgr srcMgr;
  std::string out;
  llvm::raw_string_ostream os(out);
  setDiagnosticPrinter(srcMgr, os);
  unsigned id = srcMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(line, "t.net"), llvm::SMLoc());
  const char *start = srcMgr.getMemoryBuffer(id)->getBufferStart();
  srcMgr.PrintMessage(llvm::SMLoc::getFromPointer(start + column),
                      llvm::SourceMgr::DK_Error, "bad");
  return out;
}

TEST(SourceTest, CaretUnderNonAsciiLines) {
  EXPECT_EQ(printAt("  convv 1\n", 2), "t.net:1:3: error: bad\n"
                                       "  convv 1\n"
                                       "  ^\n");
  // One column per UTF-8 character; the reported column counts bytes.
  EXPECT_EQ(printAt("  /* \xC3\xA9 */ convv 1\n", 11),
            "t.net:1:12: error: bad\n"
            "  /* \xC3\xA9 */ convv 1\n"
            "          ^\n");
  // Under the non-ASCII byte itself.
  EXPECT_EQ(printAt("  caf\xC3\xA9: relu\n", 5), "t.net:1:6: error: bad\n"
                                                 "  caf\xC3\xA9: relu\n"
                                                 "     ^\n");
  // A tab advances to the next multiple of 8 columns, as LLVM prints it.
  EXPECT_EQ(printAt("\xC3\xB1\tx\n", 3), "t.net:1:4: error: bad\n"
                                         "\xC3\xB1      x\n"
                                         "       ^\n");
}

} // namespace
