// RUN: rm -rf %t && mkdir -p %t && cp %S/Inputs/pretrained.net %t/pre.net
// RUN: python3 %S/Inputs/make-safetensors.py %t/w.safetensors conv1.weight 2x1x3x3 conv1.bias 2 fc1.weight 3x8 fc1.bias 3
// RUN: netc %t/pre.net -o %t/pre.trainer
// RUN: python3 -c "import json,struct; b=open('%t/pre.trainer/params.safetensors','rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); print(sorted(h)); o=h['fc1.weight']['data_offsets']; print(struct.unpack('<3f', b[8+n+o[0]:8+n+o[0]+12]))" | FileCheck %s
// Imported parameters are copied into the trainer, checked, at compile time.
// CHECK: ['conv1.bias', 'conv1.weight', 'fc1.bias', 'fc1.weight']
// CHECK: (0.5, 1.5, 2.5)

// A tensor of the wrong shape is an error at the layer that reads it.
// RUN: python3 %S/Inputs/make-safetensors.py %t/w.safetensors conv1.weight 2x1x5x5 conv1.bias 2 fc1.weight 3x8 fc1.bias 3
// RUN: not netc %t/pre.net -o %t/bad.trainer 2>&1 | FileCheck %s --check-prefix=SHAPE
// SHAPE: pre.net:6:17: error: layer 'conv1': tensor 'conv1.weight' of '{{.*}}w.safetensors' is F32 2x1x5x5, the parameter @conv1.weight needs F32 2x1x3x3

// A missing tensor and a file that is not safetensors.
// RUN: python3 %S/Inputs/make-safetensors.py %t/w.safetensors conv1.weight 2x1x3x3
// RUN: not netc %t/pre.net -o %t/bad.trainer 2>&1 | FileCheck %s --check-prefix=MISSING
// MISSING: error: layer 'conv1': '{{.*}}w.safetensors' has no tensor 'conv1.bias'
// init=file(...) without a key reads the parameter's own name, which the
// plan's init names.
// RUN: python3 %S/Inputs/make-safetensors.py %t/w.safetensors fc1.weight 3x8
// RUN: printf 'network k {\n  input 1x2x4\n  classes 3\n  fc1: fc 3 init=file("w.safetensors")\n}\n' > %t/key.net
// RUN: netc %t/key.net -o %t/key.trainer
// RUN: python3 -c "import json; p = json.load(open('%t/key.trainer/plan.json')); print([q['init'] for q in p['params'] if q['name'] == 'fc1.weight'])" | FileCheck %s --check-prefix=KEY
// KEY: 'key': 'fc1.weight'
// Compiled again without imports, the trainer keeps no params.safetensors.
// RUN: test -e %t/key.trainer/params.safetensors
// RUN: sed 's/ init=file("w.safetensors")//' %t/key.net > %t/nokey.net
// RUN: netc %t/nokey.net -o %t/key.trainer
// RUN: test ! -e %t/key.trainer/params.safetensors
// RUN: echo garbage > %t/w.safetensors
// RUN: not netc %t/pre.net -o %t/bad.trainer 2>&1 | FileCheck %s --check-prefix=CORRUPT
// CORRUPT: error: '{{.*}}w.safetensors': safetensors header runs past the end
