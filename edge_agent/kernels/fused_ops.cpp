// Fused float glue between the int8 convolutions of a residual shrinkage unit (edge_agent.nn.fused).
//
// Registered with TORCH_LIBRARY(edge_agent, ...) so that a TorchScript graph can call them as
// torch.ops.edge_agent.*. Every tensor of features is (N, C, 1, L) stored channels-last (NHWC), so the
// channel is the innermost, contiguous dimension and the loops over it vectorise. The arithmetic repeats
// what the unfused ATen graph does, operation by operation and in the same order (dequantize
// (q - zp) * scale, clamp, sub, add, the affine as ATen's addcmul rounds it (EA_MULADD below), quantize
// round-half-even(x * (1 / scale)) + zp), so that only the reductions (sum |x|, the head's mean) round
// differently; build with -ffp-contract=off (no multiply-add fused where ATen does not fuse it).
//
//   abs_sum(q)                                   -> (N, C) float: sum over L of |dequantize(q)|
//   affine_quantize(x, scale, shift, s, zp)      -> quint8 of x * scale + shift
//   shrink_add_quantize(q, tau, shortcut, stride, scale, shift, s, zp)
//                                                -> (y, quint8 of y * scale + shift), y = soft_threshold(
//                                                   dequantize(q), tau) + shortcut (leading channels)
//   shrink_add_head(q, tau, shortcut, stride, scale, shift)
//                                                -> (N, C) float: mean over L of relu(y * scale + shift)
//   stem_conv(x, weight, stride, padding)        -> the float stem convolution (stem_ops.inc)
//   dense, thresholds, noise_floor                -> the small float layers (glue_ops.inc)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/quantized/QTensorImpl.h>
#include <ATen/quantized/Quantizer.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <string>
#include <cstdint>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

#define EA_INLINE inline __attribute__((always_inline))

constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: (x + m) - m rounds x half to even for |x| < 2^22

struct Features {
  int64_t n, c, l;
};

Features check_features(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4 && t.size(2) == 1, name, " must be (N, C, 1, L), got ", t.sizes());
  return {t.size(0), t.size(1), t.size(3)};
}

const uint8_t* quint8_data(const at::Tensor& q) {
  return reinterpret_cast<const uint8_t*>(q.const_data_ptr<c10::quint8>());
}

at::Tensor checked_quint8(const at::Tensor& q) {
  TORCH_CHECK(q.scalar_type() == at::kQUInt8, "expected a quint8 tensor, got ", q.scalar_type());
  TORCH_CHECK(q.qscheme() == at::kPerTensorAffine, "expected per-tensor affine quantisation");
  return q.contiguous(at::MemoryFormat::ChannelsLast);
}

// scale and zero point of a per-tensor quint8 tensor, read from its quantizer (q_scale() is a dispatcher call)
struct QParams {
  float scale;
  int32_t zero_point;
};

QParams qparams(const at::Tensor& q) {
  const auto* quantizer = static_cast<at::PerTensorAffineQuantizer*>(at::get_qtensorimpl(q)->quantizer().get());
  return {static_cast<float>(quantizer->scale()), static_cast<int32_t>(quantizer->zero_point())};
}

// The common case (float32, contiguous: what the traced graphs pass) takes no dispatcher call: at batch 1
// the ops' own bookkeeping would otherwise cost as much as their arithmetic.
at::Tensor per_channel(const at::Tensor& t, int64_t channels, const char* name) {
  TORCH_CHECK(t.numel() == channels, name, " must have ", channels, " values, got ", t.numel());
  if (t.scalar_type() == at::kFloat && t.is_contiguous()) return t;
  return t.to(at::kFloat).contiguous();
}

at::Tensor per_sample_channel(const at::Tensor& tau, int64_t n, int64_t c) {
  TORCH_CHECK(tau.dim() == 2 && tau.size(0) == n && (tau.size(1) == c || tau.size(1) == 1),
              "tau must be (N, C) or (N, 1), got ", tau.sizes());
  if (tau.scalar_type() == at::kFloat && tau.size(1) == c && tau.is_contiguous()) return tau;
  return tau.to(at::kFloat).expand({n, c}).contiguous();
}

at::Tensor empty_quint8(const Features& f, double scale, int64_t zero_point) {
  TORCH_CHECK(scale > 0 && zero_point >= 0 && zero_point <= 255, "bad quint8 parameters");
  return at::_empty_affine_quantized({f.n, f.c, 1, f.l}, at::device(at::kCPU).dtype(at::kQUInt8), scale,
                                     zero_point, at::MemoryFormat::ChannelsLast);
}


struct Shortcut {
  const float* data = nullptr;  // element (n, c, 0, l * stride) at n * sn + c * sc + l * stride * sl
  int64_t sn = 0, sc = 0, sl = 0, channels = 0, stride = 1;
};

Shortcut make_shortcut(const c10::optional<at::Tensor>& shortcut, int64_t stride, const Features& f) {
  Shortcut s;
  if (!shortcut.has_value()) return s;
  const at::Tensor& t = *shortcut;
  TORCH_CHECK(t.scalar_type() == at::kFloat, "shortcut must be float32");
  const Features g = check_features(t, "shortcut");
  TORCH_CHECK(stride >= 1 && g.n == f.n && g.c <= f.c && (f.l - 1) * stride < g.l,
              "shortcut ", t.sizes(), " does not fit features (", f.n, ", ", f.c, ", 1, ", f.l, ") at stride ",
              stride);
  s.data = t.const_data_ptr<float>();
  s.sn = t.stride(0);
  s.sc = t.stride(1);
  s.sl = t.stride(3);
  s.channels = g.c;
  s.stride = stride;
  return s;
}

// Every loop below is a flat loop over a block of positions x channels (channels innermost): per-channel
// values are tiled over the block once, so the compiler vectorises each loop whatever the channel count
// (a loop over 16 channels alone would leave the uint8 loops in their scalar remainder: one 512-bit
// vector holds 64 of them).
constexpr int64_t kBlockElements = 1024;

int64_t block_positions(int64_t length, int64_t channels) {
  return std::max<int64_t>(1, std::min<int64_t>(length, kBlockElements / channels));
}

void tile(const float* values, int64_t channels, int64_t positions, float* out) {
  for (int64_t p = 0; p < positions; ++p) std::copy(values, values + channels, out + p * channels);
}

struct Unit {
  const uint8_t* q;  // (N, L, C) quint8 of conv2
  int32_t zp;
  float s;
  const float* tau;  // (N, C)
  Shortcut sc;
  const float* scale;  // (C) affine after the unit
  const float* shift;
  int64_t l, c;
};

// ATen's addcmul (the affine after each unit) is compiled with -mfma in its AVX2 and AVX-512 kernels, where
// GCC fuses its multiply and add; its default kernels round twice. The copies below do the same.
#define EA_MULADD(x, a, b) ((x) * (a) + (b))
namespace generic {
#include "fused_kernels.inc"
}  // namespace generic
#undef EA_MULADD
#define EA_MULADD(x, a, b) __builtin_fmaf((x), (a), (b))

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EA_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,prefer-vector-width=256")
namespace avx2 {
#include "fused_kernels.inc"
}  // namespace avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,prefer-vector-width=512")
namespace avx512 {
#include "fused_kernels.inc"
}  // namespace avx512
#pragma GCC pop_options
#endif
#undef EA_MULADD

// One set of kernels per process, by what the CPU runs; $EDGE_AGENT_OPS_ISA (generic, avx2, avx512) asks
// for a narrower one (tests compare them; a wider one than the CPU has is not taken).
struct Kernels {
  const char* isa;
  decltype(&generic::abs_sum_kernel) abs_sum;
  decltype(&generic::affine_quantize_kernel) affine_quantize;
  decltype(&generic::shrink_quantize_kernel) shrink_quantize;
  decltype(&generic::shrink_head_kernel) shrink_head;
  decltype(&generic::stem_kernel) stem;
};

#define EA_KERNELS(ns) \
  Kernels {                                                                                                     \
    #ns, &ns::abs_sum_kernel, &ns::affine_quantize_kernel, &ns::shrink_quantize_kernel, &ns::shrink_head_kernel, \
        &ns::stem_kernel                                                                                          \
  }

Kernels choose_kernels() {
  const char* asked = std::getenv("EDGE_AGENT_OPS_ISA");
  const std::string want = asked == nullptr ? "avx512" : asked;
#ifdef EA_X86
  __builtin_cpu_init();
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (want == "avx512" && has_avx512) return EA_KERNELS(avx512);
  if ((want == "avx512" || want == "avx2") && has_avx2) return EA_KERNELS(avx2);
#endif
  return EA_KERNELS(generic);
}

const Kernels& kernels() {
  static const Kernels chosen = choose_kernels();
  return chosen;
}

Unit make_unit(const at::Tensor& q, const at::Tensor& tau, const at::Tensor& a, const at::Tensor& b,
               const Shortcut& sc, const Features& f) {
  const QParams p = qparams(q);
  return {quint8_data(q), p.zero_point, p.scale,
          tau.const_data_ptr<float>(), sc, a.const_data_ptr<float>(), b.const_data_ptr<float>(), f.l, f.c};
}

at::Tensor abs_sum(const at::Tensor& q_in) {
  const at::Tensor q = checked_quint8(q_in);
  const Features f = check_features(q, "q");
  TORCH_CHECK(f.l * 255 < (int64_t{1} << 24), "too long for an exact sum");
  at::Tensor out = at::empty({f.n, f.c}, at::kFloat);
  const uint8_t* data = quint8_data(q);
  const QParams p = qparams(q);
  const int32_t zp = p.zero_point;
  const float s = p.scale;
  float* o = out.data_ptr<float>();
  at::parallel_for(0, f.n, 1, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> acc(kBlockElements);
    kernels().abs_sum(data, zp, s, begin, end, f.l, f.c, acc.data(), o);
  });
  return out;
}

at::Tensor affine_quantize(const at::Tensor& x_in, const at::Tensor& scale, const at::Tensor& shift, double out_scale,
                           int64_t out_zero_point) {
  TORCH_CHECK(x_in.scalar_type() == at::kFloat, "x must be float32");
  const at::Tensor x = x_in.contiguous(at::MemoryFormat::ChannelsLast);
  const Features f = check_features(x, "x");
  const at::Tensor a = per_channel(scale, f.c, "scale"), b = per_channel(shift, f.c, "shift");
  at::Tensor out = empty_quint8(f, out_scale, out_zero_point);
  const float inverse = 1.0f / static_cast<float>(out_scale);
  uint8_t* od = reinterpret_cast<uint8_t*>(out.data_ptr<c10::quint8>());
  at::parallel_for(0, f.n * f.l, 256, [&](int64_t begin, int64_t end) {
    std::vector<float> tiles(2 * kBlockElements);
    kernels().affine_quantize(x.const_data_ptr<float>(), begin, end, f.c, a.const_data_ptr<float>(),
                           b.const_data_ptr<float>(), inverse, static_cast<int32_t>(out_zero_point), tiles.data(), od);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> shrink_add_quantize(const at::Tensor& q_in, const at::Tensor& tau_in,
                                                       const c10::optional<at::Tensor>& shortcut, int64_t stride,
                                                       const at::Tensor& scale, const at::Tensor& shift,
                                                       double out_scale, int64_t out_zero_point) {
  const at::Tensor q = checked_quint8(q_in);
  const Features f = check_features(q, "q");
  const at::Tensor tau = per_sample_channel(tau_in, f.n, f.c);
  const at::Tensor a = per_channel(scale, f.c, "scale"), b = per_channel(shift, f.c, "shift");
  const Unit u = make_unit(q, tau, a, b, make_shortcut(shortcut, stride, f), f);
  at::Tensor y = at::empty({f.n, f.c, 1, f.l},
                           at::device(at::kCPU).dtype(at::kFloat).memory_format(at::MemoryFormat::ChannelsLast));
  at::Tensor out = empty_quint8(f, out_scale, out_zero_point);
  const float inverse = 1.0f / static_cast<float>(out_scale);
  float* yd = y.data_ptr<float>();
  uint8_t* od = reinterpret_cast<uint8_t*>(out.data_ptr<c10::quint8>());
  at::parallel_for(0, f.n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> tiles(3 * kBlockElements);
    kernels().shrink_quantize(u, begin, end, inverse, static_cast<int32_t>(out_zero_point), tiles.data(), yd, od);
  });
  return {y, out};
}

at::Tensor shrink_add_head(const at::Tensor& q_in, const at::Tensor& tau_in, const c10::optional<at::Tensor>& shortcut,
                           int64_t stride, const at::Tensor& scale, const at::Tensor& shift) {
  const at::Tensor q = checked_quint8(q_in);
  const Features f = check_features(q, "q");
  const at::Tensor tau = per_sample_channel(tau_in, f.n, f.c);
  const at::Tensor a = per_channel(scale, f.c, "scale"), b = per_channel(shift, f.c, "shift");
  const Unit u = make_unit(q, tau, a, b, make_shortcut(shortcut, stride, f), f);
  at::Tensor out = at::empty({f.n, f.c}, at::kFloat);
  float* od = out.data_ptr<float>();
  at::parallel_for(0, f.n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(5 * kBlockElements);
    kernels().shrink_head(u, begin, end, scratch.data(), od);
  });
  return out;
}

#include "qconv_ops.inc"
#include "stem_ops.inc"
#include "glue_ops.inc"

}  // namespace

std::string kernel_isa() { return kernels().isa; }
std::string conv_isa() { return conv_kernel().isa; }

TORCH_LIBRARY(edge_agent, m) {
  m.def("kernel_isa() -> str", &kernel_isa);
  m.def("conv_isa() -> str", &conv_isa);
  m.def(
      "qconv1d(Tensor q, Tensor weight, Tensor weight_sums, Tensor weight_scales, Tensor bias, int stride, "
      "float out_scale, int out_zero_point, bool relu) -> Tensor",
      &qconv1d);
  m.def(
      "qconv1d_abs_sum(Tensor q, Tensor weight, Tensor weight_sums, Tensor weight_scales, Tensor bias, int stride, "
      "float out_scale, int out_zero_point, bool relu) -> (Tensor, Tensor)",
      &qconv1d_abs_sum);
  m.def(
      "conv_unit(Tensor q, Tensor w1, Tensor sums1, Tensor scales1, Tensor bias1, int stride, float scale1, "
      "int zero_point1, Tensor w2, Tensor sums2, Tensor scales2, Tensor bias2, float scale2, int zero_point2) "
      "-> (Tensor, Tensor)",
      &conv_unit);
  m.def("abs_sum(Tensor q) -> Tensor", &abs_sum);
  m.def("affine_quantize(Tensor x, Tensor scale, Tensor shift, float out_scale, int out_zero_point) -> Tensor",
        &affine_quantize);
  m.def(
      "shrink_add_quantize(Tensor q, Tensor tau, Tensor? shortcut, int stride, Tensor scale, Tensor shift, "
      "float out_scale, int out_zero_point) -> (Tensor, Tensor)",
      &shrink_add_quantize);
  m.def("shrink_add_head(Tensor q, Tensor tau, Tensor? shortcut, int stride, Tensor scale, Tensor shift) -> Tensor",
        &shrink_add_head);
  m.def("stem_conv(Tensor x, Tensor weight, int stride, int padding) -> Tensor", &stem_conv);
  m.def("dense(Tensor x, Tensor weight, Tensor bias, bool relu) -> Tensor", &dense);
  m.def("thresholds(Tensor s, Tensor w1, Tensor b1, Tensor w2, Tensor b2, float inverse_length) -> Tensor",
        &thresholds);
  m.def("noise_floor(Tensor[] taus, Tensor log_reference) -> Tensor", &noise_floor);
}
