// Package pba predicts the bandwidth of a migration link and divides it
// among concurrent migrations (DWCP's Predictive Bandwidth Allocator).
//
// Pre-copy migration decides when to stop and copy, how many streams to
// open and how hard to compress from what the link will do next. pba
// answers two questions from the transport's recent throughput samples:
// how much bandwidth to expect over the next seconds (a point forecast) and
// how much is nearly certain (a lower forecast, for downtime decisions).
//
// # Predictors
//
// Every forecaster implements Predictor (Observe a sample, Predict the mean
// of the next h samples):
//
//   - LastValue, EWMA, Harmonic (mean of the last 5), RobustMPC (the
//     harmonic mean discounted by its recent maximum error) and Holt
//     (double exponential smoothing): the baselines.
//   - LSTMPredictor runs a Model: a stacked LSTM written on gonum's BLAS,
//     trained by backpropagation through time with Adam and gradient-norm
//     clipping (Train). It reads a window of log-ratio features and outputs,
//     for each horizon, quantiles of the ratio of the future mean to the
//     last sample: the median (trained with the absolute error WAPE sums)
//     and a lower quantile (pinball loss) that is the conservative forecast.
//     Models are saved in a versioned, checksummed format (MarshalBinary,
//     ReadModel); a trained default model is embedded (DefaultModel).
//   - Selector runs them all side by side, scores each forecast when its
//     target arrives, and answers with the predictor whose recent WAPE is
//     lowest for the current workload class, so a model that does worse
//     than the last value on some link is not used there.
//
// # Definitions
//
// WAPE = sum|predicted-actual| / sum actual; accuracy = 100*(1-min(1,WAPE)).
// A miss is a forecast above 1.2 times the actual value. The workload class
// of a sample is set by the coefficient of variation of the 20 samples
// before it: stable < 0.15 <= variable < 0.5 <= bursty. The target of a
// horizon of h samples is the mean of the next h samples. Evaluate scores
// predictors with these definitions; examples/pba-eval prints the tables.
//
// # Online use
//
//	f, err := pba.NewOnline(pba.DefaultConfig(), met) // embedded model
//	...
//	f.Observe(pba.Sample{Time: now, BytesPerSecond: goodput, RTT: srtt})
//	point, lower := f.Forecast(5 * time.Second)
//	alloc, err := pba.NewAllocator(met).Allocate(lower, []pba.Request{
//		{ID: "vm-1", Weight: 2}, {ID: "vm-2", Weight: 1, Demand: 50e6},
//	})
//
// Forecast horizons are converted to samples with the measured sample
// interval (or Config.SampleInterval). Allocate shares capacity by weighted
// max-min fairness and reports utilisation.
//
// # Concurrency
//
// Online and Allocator are safe for concurrent use; Observe does the
// inference (tens of microseconds with the default model) and Forecast only
// reads. Predictors, Selector and Model are not: give each goroutine its
// own (Model.Clone). Nothing starts goroutines, so nothing needs closing.
//
// # Metrics
//
// Online records dwcp_v3_pba_predictions_total{workload} and
// dwcp_v3_pba_prediction_misses_total{workload} for its forecast one sample
// ahead (misses are counted on the lower forecast, the one decisions rely
// on), dwcp_v3_pba_prediction_accuracy_percent{workload} of its point
// forecast over the recent window, dwcp_v3_pba_inference_latency_seconds
// {predictor} (the LSTM's forward pass, the whole per-sample update as
// "ensemble", and each Forecast under the chosen predictor) and
// dwcp_v3_migration_latency_seconds{component="pba"} per Forecast.
// Allocator sets dwcp_v3_pba_bandwidth_utilization_percent.
//
// # Limits
//
// RTT is accepted and smoothed but is not a model input: none of the
// training traces records it, and an input never seen in training would
// only add noise. The model does not learn online; the Selector's fallback
// is what protects a link unlike the training traces.
package pba
