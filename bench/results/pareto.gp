set terminal png size 1400,640 noenhanced
set output 'bench/results/pareto.png'
set multiplot layout 1,2 title 'BiLD on this machine: speedup over the large model alone vs quality (bench/bild, one interleaved run)'
set grid
set key below font ',9' maxrows 3
set xlabel 'speedup over the large model alone'
set ylabel 'ROUGE-L vs the large model greedy text'
set yrange [*:1.02]
plot 'bench/results/pareto.dat' index 0 using 1:2 with points pt 9 ps 2 lc rgb 'black' title 'large model alone', \
     'bench/results/pareto.dat' index 1 using 1:2 with points pt 6 ps 1.2 lc rgb '#1f77b4' title 'stories15M-aligned-stage2, BiLD', \
     'bench/results/pareto.dat' index 2 using 1:2 with points pt 7 ps 1.2 lc rgb '#1f77b4' title 'stories15M-aligned-stage2, BiLD, exact text', \
     'bench/results/pareto.dat' index 3 using 1:2 with points pt 8 ps 1.5 lc rgb '#1f77b4' title 'stories15M-aligned-stage2, speculative', \
     'bench/results/pareto.dat' index 4 using 1:2 with points pt 3 ps 2.5 lc rgb '#1f77b4' title 'stories15M-aligned-stage2, oracle bound', \
     'bench/results/pareto.dat' index 5 using 1:2 with points pt 6 ps 1.2 lc rgb '#d62728' title 'stories15M-aligned, BiLD', \
     'bench/results/pareto.dat' index 6 using 1:2 with points pt 7 ps 1.2 lc rgb '#d62728' title 'stories15M-aligned, BiLD, exact text', \
     'bench/results/pareto.dat' index 7 using 1:2 with points pt 8 ps 1.5 lc rgb '#d62728' title 'stories15M-aligned, speculative', \
     'bench/results/pareto.dat' index 8 using 1:2 with points pt 3 ps 2.5 lc rgb '#d62728' title 'stories15M-aligned, oracle bound'
set ylabel 'NLL of the output under the large model (nats/token)'
set yrange [*:*]
plot 'bench/results/pareto.dat' index 0 using 1:3 with points pt 9 ps 2 lc rgb 'black' title 'large model alone', \
     'bench/results/pareto.dat' index 1 using 1:3 with points pt 6 ps 1.2 lc rgb '#1f77b4' title 'stories15M-aligned-stage2, BiLD', \
     'bench/results/pareto.dat' index 2 using 1:3 with points pt 7 ps 1.2 lc rgb '#1f77b4' title 'stories15M-aligned-stage2, BiLD, exact text', \
     'bench/results/pareto.dat' index 3 using 1:3 with points pt 8 ps 1.5 lc rgb '#1f77b4' title 'stories15M-aligned-stage2, speculative', \
     'bench/results/pareto.dat' index 4 using 1:3 with points pt 3 ps 2.5 lc rgb '#1f77b4' title 'stories15M-aligned-stage2, oracle bound', \
     'bench/results/pareto.dat' index 5 using 1:3 with points pt 6 ps 1.2 lc rgb '#d62728' title 'stories15M-aligned, BiLD', \
     'bench/results/pareto.dat' index 6 using 1:3 with points pt 7 ps 1.2 lc rgb '#d62728' title 'stories15M-aligned, BiLD, exact text', \
     'bench/results/pareto.dat' index 7 using 1:3 with points pt 8 ps 1.5 lc rgb '#d62728' title 'stories15M-aligned, speculative', \
     'bench/results/pareto.dat' index 8 using 1:3 with points pt 3 ps 2.5 lc rgb '#d62728' title 'stories15M-aligned, oracle bound'
unset multiplot
