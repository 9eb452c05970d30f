# core/model/build.mk - the model module's make fragment.
# The CPU backend's elementwise loops (LayerNorm, GELU, the fused classifier, AdamW) benefit from -O3 vectorisation;
# -fno-math-errno lets sqrtf vectorise (the backend never reads errno); the classifier's exps fuse multiply-adds
# where the CPU has FMA (see sm_gpt2_classifier.c).
$(BUILD)/obj/core/model/sm_gpt2_cpu.o: CFLAGS += -O3 -fno-math-errno
$(BUILD)/obj/core/model/sm_gpt2_classifier.o: CFLAGS += -O3 -fno-math-errno -ffp-contract=fast
