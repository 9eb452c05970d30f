# core/autoscale/build.mk - the plugin test loads the AutoScale plugins from $(BUILD)/plugins.
$(BUILD)/tests/test_autoscale_plugins: $(BUILD)/plugins/fit.so $(BUILD)/plugins/extrapolate.so \
  $(BUILD)/plugins/compare.so $(BUILD)/plugins/plot.so
