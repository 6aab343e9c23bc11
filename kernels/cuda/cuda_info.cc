// kestrel-cuda-info: prints the CUDA runtime, cuBLAS and NCCL versions this
// build links against and the GPUs it can see. Exits 1 when there is no GPU.
#include <cstdio>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

int main() {
  int runtime_version = 0;
  cudaRuntimeGetVersion(&runtime_version);
  int cublas_major = 0, cublas_minor = 0, cublas_patch = 0;
  cublasGetProperty(MAJOR_VERSION, &cublas_major);
  cublasGetProperty(MINOR_VERSION, &cublas_minor);
  cublasGetProperty(PATCH_LEVEL, &cublas_patch);
  int nccl_version = 0;
  ncclGetVersion(&nccl_version);
  // NCCL >= 2.9 encodes its version as major * 10000 + minor * 100 + patch.
  std::printf("CUDA runtime %d.%d, cuBLAS %d.%d.%d, NCCL %d.%d.%d\n", runtime_version / 1000,
              (runtime_version % 1000) / 10, cublas_major, cublas_minor, cublas_patch,
              nccl_version / 10000, (nccl_version / 100) % 100, nccl_version % 100);

  int devices = 0;
  cudaError_t error = cudaGetDeviceCount(&devices);
  if (error != cudaSuccess) {
    std::printf("no usable GPU: %s\n", cudaGetErrorString(error));
    return 1;
  }
  for (int i = 0; i < devices; ++i) {
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, i);
    std::printf("GPU %d: %s, sm_%d%d, %.1f GiB\n", i, prop.name, prop.major, prop.minor,
                prop.totalGlobalMem / double(1 << 30));
  }
  return 0;
}
