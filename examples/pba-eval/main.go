// Command pba-eval trains the pba LSTM on the first part of every trace in
// a folder and scores it, the baselines and the online selector on the
// rest, one prediction at a time, by workload class.
//
//	go run ./examples/pba-eval -traces ../shared/traces/norway-hsdpa [-train-frac 0.7] [-horizon 1]
//
// Trace files hold one `time_seconds throughput_mbit_per_second` sample a
// line; malformed lines are counted and skipped. -save writes the trained
// model (this is how pba/default_model.pbam is produced); -model evaluates
// a saved model instead of training one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/dwcp/dwcp/pba"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pba-eval:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	def := pba.DefaultTrainConfig()
	fs := flag.NewFlagSet("pba-eval", flag.ContinueOnError)
	dir := fs.String("traces", "", "folder of trace files (required)")
	trainFrac := fs.Float64("train-frac", 0.7, "fraction of each trace, from its start, used for training")
	horizon := fs.Int("horizon", 1, "forecast horizon in samples (the mean of the next N samples is predicted)")
	layers := fs.Int("layers", def.Shape.Layers, "LSTM layers")
	hidden := fs.Int("hidden", def.Shape.Hidden, "LSTM hidden units per layer")
	window := fs.Int("window", def.Shape.Window, "input window in samples")
	epochs := fs.Int("epochs", def.Epochs, "maximum training epochs")
	seed := fs.Uint64("seed", def.Seed, "random seed of the initial weights and shuffling")
	maxTrain := fs.Duration("max-train-time", def.MaxDuration, "stop training after this long (best epoch kept)")
	save := fs.String("save", "", "write the trained model to this file")
	load := fs.String("model", "", "evaluate this saved model instead of training")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-traces is required")
	}
	if *load != "" && *save != "" {
		return errors.New("-model and -save exclude each other")
	}
	start := time.Now()
	all, err := pba.ReadTraceDir(*dir)
	if err != nil {
		return err
	}
	var traces []*pba.Trace
	malformed, samples := 0, 0
	for _, tr := range all {
		malformed += tr.Malformed
		if len(tr.Throughput) >= 2 {
			traces = append(traces, tr)
			samples += len(tr.Throughput)
		}
	}
	fmt.Fprintf(out, "traces: %d files, %d usable, %d samples, %d malformed lines skipped\n", len(all), len(traces), samples, malformed)
	if len(traces) == 0 {
		return fmt.Errorf("no usable trace in %s", *dir)
	}

	cfg := def
	cfg.TrainFrac, cfg.Epochs, cfg.Seed, cfg.MaxDuration = *trainFrac, *epochs, *seed, *maxTrain
	cfg.Shape.Layers, cfg.Shape.Hidden, cfg.Shape.Window = *layers, *hidden, *window
	if !slices.Contains(cfg.Shape.Horizons, *horizon) {
		cfg.Shape.Horizons = append(cfg.Shape.Horizons, *horizon)
		slices.Sort(cfg.Shape.Horizons)
	}
	var model *pba.Model
	switch {
	case *load != "":
		f, err := os.Open(*load)
		if err != nil {
			return err
		}
		model, err = pba.ReadModel(f)
		f.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "model: %s (%d parameters, horizons %v)\n", *load, model.NumParams(), model.Shape().Horizons)
	default:
		if err := cfg.Validate(); err != nil {
			return err
		}
		m, res, err := pba.Train(context.Background(), traces, cfg)
		if err != nil {
			fmt.Fprintf(out, "LSTM not trained (%v); evaluating the baselines only\n", err)
			break
		}
		model = m
		fmt.Fprintf(out, "training: %d layer(s) x %d hidden, window %d, horizons %v, quantiles %v, %d parameters\n",
			cfg.Shape.Layers, cfg.Shape.Hidden, cfg.Shape.Window, cfg.Shape.Horizons, cfg.Shape.Quantiles, m.NumParams())
		fmt.Fprintf(out, "training: %d windows (+%d validation), %d epochs, best %d (validation loss %.4f), %v, timed out: %v\n",
			res.TrainWindows, res.ValidationWindows, res.Epochs, res.BestEpoch, res.BestValidationLoss, res.Duration.Round(time.Millisecond), res.TimedOut)
		if *save != "" {
			f, err := os.Create(*save)
			if err != nil {
				return err
			}
			if _, err := m.WriteTo(f); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(out, "model saved to %s\n", *save)
		}
	}

	preds := pba.Baselines()
	if model != nil {
		preds = append(preds, pba.NewLSTMPredictor(model))
	}
	sel, err := pba.NewSelector(pba.SelectorConfig{}, model)
	if err != nil {
		return err
	}
	preds = append(preds, sel)
	results, err := pba.Evaluate(traces, preds, pba.EvalOptions{TrainFrac: *trainFrac, Horizon: *horizon, MeasureLatency: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nevaluation: last %.0f%% of each trace, horizon %d sample(s); WAPE = sum|pred-actual|/sum actual, miss = pred > 1.2*actual\n\n",
		100*(1-*trainFrac), *horizon)
	printTable(out, results)
	fmt.Fprintf(out, "\ntotal time %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func printTable(out io.Writer, results []pba.EvalResult) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "predictor\tclass\tn\taccuracy %\tWAPE %\tmisses %\tp99 latency\t")
	classes := []pba.Workload{pba.Stable, pba.Variable, pba.Bursty}
	for _, r := range results {
		row := func(class string, s *pba.Score) {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.2f\t%.1f\t%v\t\n", r.Label(), class, s.Predictions,
				s.Accuracy(), 100*s.WAPE(), s.MissPercent(), s.LatencyQuantile(0.99))
		}
		for _, c := range classes {
			row(c.String(), &r.Scores.ByClass[c])
		}
		row("all", &r.Scores.All)
	}
	tw.Flush()
}
