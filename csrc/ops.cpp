// The thin binding: input checks and the CPU dispatch of the ops. The math lives in kernels/; the op schemas are
// defined once, for every namespace, in ddrm_fast/ops.py (which defines them before it loads this library).
#include <ATen/Parallel.h>
#include <Python.h>
#include <torch/library.h>

#include "op_bindings.h"

namespace ddrm {

// The CPU as a device of op_bindings.h: rows (spectral) or rows of groups (grouped) in parallel.
struct Cpu {
  struct Guard {
    explicit Guard(const at::Device&) {}
  };
  static void check(const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor for the CPU kernel");
  }
  static void run(const SpectralStepArgs& a) {
    // rows are independent: parallel over the batch, a grain of one row (rows are large)
    at::parallel_for(0, a.batch, 1, [&](int64_t b0, int64_t b1) { spectral_step_cpu(a, b0, b1); });
  }
  static void run(const GroupStepArgs& a) {
    const int64_t rows = a.B * (a.C / a.cg) * (a.H / a.rh);
    const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, a.W));  // ~4096 values per task
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) { group_step_cpu(a, r0, r1); });
  }
};

}  // namespace ddrm

TORCH_LIBRARY_IMPL(ddrm_fast, CPU, m) {
  m.impl("spectral_step", &ddrm::spectral_step_op<ddrm::Cpu>);
  m.impl("group_step", &ddrm::group_step_op<ddrm::Cpu>);
}

// A Python module so `import ddrm_fast._C` loads the library (and with it the registrations above).
static PyObject* built_with_cuda(PyObject*, PyObject*) {
#ifdef DDRM_FAST_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"built_with_cuda", built_with_cuda, METH_NOARGS, "True when the CUDA kernels were compiled in."},
    {nullptr, nullptr, 0, nullptr}};

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "ddrm_fast compiled ops", -1, methods};
  return PyModule_Create(&module_def);
}
