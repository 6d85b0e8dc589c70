// RUN: rm -rf %t && mkdir -p %t && cp %S/Inputs/torchvision.net %t/tv.net
// RUN: python3 %S/Inputs/make-safetensors.py %t/w.safetensors features.0.weight 2x1x3x3 features.0.bias 2 classifier.1.weight 5x8 classifier.1.bias 5 classifier.3.weight 3x5 classifier.3.bias 3
// RUN: netc %t/tv.net -o %t/tv.trainer
// RUN: python3 -c "import json,struct; b=open('%t/tv.trainer/params.safetensors','rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); print(sorted(h)); print(sorted(json.load(open('%t/tv.trainer/plan.json'))['torchvision'].items()))" | FileCheck %s
// names=torchvision reads each parameter under its torchvision name
// (flatten is not a module: fc6 is classifier.1 after the dropout), and the
// plan keeps the mapping for `netrun export`.
// CHECK: ['conv1.bias', 'conv1.weight', 'fc6.bias', 'fc6.weight', 'fc8.bias', 'fc8.weight']
// CHECK: [('conv1.bias', 'features.0.bias'), ('conv1.weight', 'features.0.weight'), ('fc6.bias', 'classifier.1.bias'), ('fc6.weight', 'classifier.1.weight'), ('fc8.bias', 'classifier.3.bias'), ('fc8.weight', 'classifier.3.weight')]

// Every mismatch is reported, not just the first: two wrong shapes and two
// missing tensors.
// RUN: python3 %S/Inputs/make-safetensors.py %t/w.safetensors features.0.weight 2x1x5x5 features.0.bias 2 classifier.1.weight 5x9 classifier.1.bias 5
// RUN: not netc %t/tv.net -o %t/bad.trainer 2>&1 | FileCheck %s --check-prefix=ALL
// ALL: tv.net:7:17: error: layer 'conv1': tensor 'features.0.weight' of '{{.*}}w.safetensors' is F32 2x1x5x5, the parameter @conv1.weight needs F32 2x1x3x3
// ALL: tv.net:9:3: error: layer 'fc6': tensor 'classifier.1.weight' of '{{.*}}w.safetensors' is F32 5x9, the parameter @fc6.weight needs F32 5x8
// ALL: tv.net:10:3: error: layer 'fc8': '{{.*}}w.safetensors' has no tensor 'classifier.3.weight'
// ALL: tv.net:10:3: error: layer 'fc8': '{{.*}}w.safetensors' has no tensor 'classifier.3.bias'

// A truncated file is one error, however many parameters it holds.
// RUN: python3 %S/Inputs/make-safetensors.py %t/w.safetensors features.0.weight 2x1x3x3 features.0.bias 2 classifier.1.weight 5x8 classifier.1.bias 5 classifier.3.weight 3x5 classifier.3.bias 3
// RUN: head -c 100 %t/w.safetensors > %t/cut && mv %t/cut %t/w.safetensors
// RUN: not netc %t/tv.net -o %t/bad.trainer 2>&1 | FileCheck %s --check-prefix=CUT
// CUT-COUNT-1: error:
// CUT-NOT: error:
