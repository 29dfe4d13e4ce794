import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;

import com.example.Samples;
import com.example.User;
import com.example.UserService;
import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ReferenceConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;

/**
 * The Java Dubbo consumer of `pojo-bench` (crates/rdubbo-bench/src/pojo.rs): one reference to
 * com.example.UserService at --url, driven by commands on standard input, one per line:
 *
 * <pre>
 * warm SECONDS CONCURRENCY        -> WARMED calls=N
 * serial CALLS                    -> SERIAL p50_us=X p90_us=Y p99_us=Z
 * load CONCURRENCY SECONDS PID HZ -> LOAD calls=N seconds=S cpu_ns=C peer_cpu_ticks=T errors=E
 * quit
 * </pre>
 *
 * Every call is echoUser(Samples.user(7)). `load` keeps CONCURRENCY calls in flight (one
 * thread each) and reports this JVM's CPU time over the window and the CPU ticks (utime +
 * stime of /proc/PID/stat) the provider process PID used in the same window.
 */
public final class PojoBenchDriver {
    private PojoBenchDriver() {
    }

    static long processCpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime();
    }

    static long ticksOf(long pid) {
        if (pid <= 0) {
            return 0;
        }
        try {
            String stat = new String(Files.readAllBytes(Paths.get("/proc/" + pid + "/stat")));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            return Long.parseLong(f[11]) + Long.parseLong(f[12]);
        } catch (Exception e) {
            return 0;
        }
    }

    static long[] load(UserService svc, User sample, int concurrency, double seconds) throws Exception {
        AtomicLong calls = new AtomicLong();
        AtomicLong errors = new AtomicLong();
        long start = System.nanoTime();
        long deadline = start + (long) (seconds * 1e9);
        Thread[] threads = new Thread[concurrency];
        for (int t = 0; t < concurrency; t++) {
            threads[t] = new Thread(() -> {
                long n = 0;
                while (System.nanoTime() < deadline) {
                    try {
                        svc.echoUser(sample);
                        n++;
                    } catch (RuntimeException e) {
                        if (errors.incrementAndGet() == 1) {
                            System.err.println("bench error: " + e);
                        }
                    }
                }
                calls.addAndGet(n);
            });
            threads[t].start();
        }
        for (Thread t : threads) {
            t.join();
        }
        return new long[] {calls.get(), System.nanoTime() - start, errors.get()};
    }

    public static void main(String[] args) throws Exception {
        String url = null;
        int timeout = 10000;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--url":
                    url = args[++i];
                    break;
                case "--timeout":
                    timeout = Integer.parseInt(args[++i]);
                    break;
                default:
                    System.err.println("unknown argument: " + args[i]);
                    System.exit(2);
            }
        }
        ApplicationConfig app = new ApplicationConfig("pojo-bench-driver");
        app.setQosEnable(false);
        ReferenceConfig<UserService> ref = new ReferenceConfig<>();
        ref.setInterface(UserService.class);
        ref.setUrl(url);
        ref.setTimeout(timeout);
        ref.setRetries(0);
        DubboBootstrap.getInstance().application(app).registry(new RegistryConfig("N/A")).reference(ref).start();
        UserService svc = ref.get();
        User sample = Samples.user(7);
        if (!sample.equals(svc.echoUser(sample))) {
            System.out.println("FAILED echoUser answered another user");
            System.out.flush();
            Runtime.getRuntime().halt(1);
        }
        System.out.println("READY");
        System.out.flush();

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            String[] w = line.trim().split("\\s+");
            switch (w[0]) {
                case "warm": {
                    long[] r = load(svc, sample, Integer.parseInt(w[2]), Double.parseDouble(w[1]));
                    System.out.println("WARMED calls=" + r[0] + " errors=" + r[2]);
                    break;
                }
                case "serial": {
                    long[] lat = new long[Integer.parseInt(w[1])];
                    for (int i = 0; i < lat.length / 10; i++) {
                        svc.echoUser(sample);
                    }
                    for (int i = 0; i < lat.length; i++) {
                        long t0 = System.nanoTime();
                        svc.echoUser(sample);
                        lat[i] = System.nanoTime() - t0;
                    }
                    Arrays.sort(lat);
                    System.out.printf("SERIAL p50_us=%.1f p90_us=%.1f p99_us=%.1f%n",
                            lat[lat.length / 2] / 1e3, lat[lat.length * 9 / 10] / 1e3, lat[lat.length * 99 / 100] / 1e3);
                    break;
                }
                case "load": {
                    int concurrency = Integer.parseInt(w[1]);
                    double seconds = Double.parseDouble(w[2]);
                    long pid = Long.parseLong(w[3]);
                    long cpu0 = processCpuNanos();
                    long peer0 = ticksOf(pid);
                    long[] r = load(svc, sample, concurrency, seconds);
                    long peer1 = ticksOf(pid);
                    long cpu1 = processCpuNanos();
                    System.out.printf("LOAD calls=%d seconds=%.3f cpu_ns=%d peer_cpu_ticks=%d errors=%d%n",
                            r[0], r[1] / 1e9, cpu1 - cpu0, peer1 - peer0, r[2]);
                    break;
                }
                case "quit":
                    System.out.flush();
                    Runtime.getRuntime().halt(0);
                    break;
                default:
                    System.out.println("ERROR unknown command " + line);
            }
            System.out.flush();
        }
        Runtime.getRuntime().halt(0);
    }
}
