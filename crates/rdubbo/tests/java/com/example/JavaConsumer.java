package com.example;

import static com.example.Checks.*;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Date;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ReferenceConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;
import org.apache.dubbo.rpc.RpcContext;

/**
 * Calls UserService and checks every answer.
 *
 * <pre>
 * JavaConsumer (--url dubbo://127.0.0.1:P/com.example.UserService | --registry zookeeper://127.0.0.1:Z)
 *              [--version V] [--timeout ms]
 *              [--migration-step FORCE_INTERFACE|APPLICATION_FIRST|FORCE_APPLICATION]   (Dubbo 3 only)
 *              [--metadata-center]   (use the registry as metadata center: Dubbo 3 app-level discovery)
 *              [check | echo-types | bench --concurrency C --seconds S]
 * </pre>
 *
 * check / echo-types print "ok NAME [info]" or "FAIL NAME: detail" per check, then
 * "DONE p passed, f failed"; the exit code is 0 iff nothing failed. bench prints
 * "BENCH calls=N seconds=S calls_per_sec=X p50_us=Y".
 */
public final class JavaConsumer {
    private JavaConsumer() {
    }

    // ------------------------------------------------------------------ check

    static void runChecks(UserService svc) {
        check("getUser", () -> {
            User u = svc.getUser(7L);
            expectEq(Samples.user(7), u);
            return null;
        });
        check("getUser-not-found", () -> {
            try {
                User u = svc.getUser(-1L);
                throw new Fail("no exception, got " + u);
            } catch (UserNotFoundException e) {
                expectEq("no user -1", e.getMessage());
                return e.getClass().getName();
            }
        });
        check("createUser", () -> {
            expectEq(3007L, svc.createUser(Samples.user(7)));
            return null;
        });
        check("echoUser-full", () -> {
            User u = Samples.user(42);
            u.setTags(new ArrayList<>(Arrays.asList("a", "", "c\u00e9\uD83D\uDE00")));
            Map<String, Integer> scores = new LinkedHashMap<>();
            scores.put("math", 90);
            scores.put("art", -1);
            scores.put("min", Integer.MIN_VALUE);
            u.setScores(scores);
            u.setBalance(new BigDecimal("-0.000001"));
            expectEq(u, svc.echoUser(u));
            return null;
        });
        check("echoUser-nulls", () -> {
            User u = new User();
            User back = svc.echoUser(u);
            expectEq(u, back);
            return null;
        });
        check("echoUser-nested", () -> {
            User u = Samples.plain("bob", 30);
            u.setAddress(new Address("Beijing", null));
            u.setLevel(Level.BRONZE);
            expectEq(u, svc.echoUser(u));
            return null;
        });
        check("listUsers", () -> {
            List<User> users = svc.listUsers(3);
            List<User> expected = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                expected.add(Samples.plain("user" + i, i));
            }
            expectEq(expected, users);
            expectEq(Collections.emptyList(), svc.listUsers(0));
            return null;
        });
        check("inc-primitive", () -> {
            expectEq(6L, svc.inc(5L));
            return null;
        });
        check("inc-boxed", () -> {
            expectEq(7L, svc.inc(Long.valueOf(5)));
            return null;
        });
        check("inc-boxed-null", () -> {
            expectEq(-1L, svc.inc((Long) null));
            return null;
        });
        check("whoami", () -> {
            RpcContext.getContext().setAttachment("caller", "java-consumer");
            String who = svc.whoami();
            expectEq("java-consumer", who);
            // The documented way; empty on 2.7 with a direct URL (see CaptureFilter).
            String servedBy = RpcContext.getServerContext().getAttachment("served-by");
            Object onWire = CaptureFilter.lastResponseAttachments().get("served-by");
            if (servedBy == null && onWire == null) {
                throw new Fail("response attachment served-by missing");
            }
            return "served-by=" + (servedBy != null ? servedBy
                    : onWire + " (only seen by CaptureFilter: RpcContext.getServerContext() is empty)");
        });
        check("byName", () -> {
            User a = Samples.plain("a", 1);
            User ann = Samples.user(3);
            Map<String, User> m = svc.byName(Arrays.asList(a, ann));
            Map<String, User> expected = new LinkedHashMap<>();
            expected.put("a", a);
            expected.put("ann", ann);
            expectEq(expected, m);
            return cls(m);
        });
        check("levelOf", () -> {
            expectEq(Level.GOLD, svc.levelOf(Samples.user(1)));
            expectEq(Level.SILVER, svc.levelOf(withLevel(Level.SILVER)));
            expectEq(null, svc.levelOf(Samples.plain("x", 1)));
            return null;
        });
    }

    static User withLevel(Level level) {
        User u = Samples.plain("lv", 2);
        u.setLevel(level);
        return u;
    }

    // ------------------------------------------------------------- echo-types

    /** Sends value through echo(Object); the answer must be equal and of the same class. */
    static void echoSame(UserService svc, String name, Object value) {
        check("echo-" + name, () -> {
            Object back = svc.echo(value);
            if (value == null) {
                expectEq(null, back);
                return null;
            }
            if (back == null || back.getClass() != value.getClass()) {
                throw new Fail("class: sent " + cls(value) + " got " + cls(back) + " (" + back + ")");
            }
            // deepEquals handles arrays of every element type.
            if (!Arrays.deepEquals(new Object[] {value}, new Object[] {back})) {
                throw new Fail("value: sent " + Arrays.deepToString(new Object[] {value}) + " got "
                        + Arrays.deepToString(new Object[] {back}));
            }
            return cls(back);
        });
    }

    static void runEchoTypes(UserService svc) {
        echoSame(svc, "Integer", 42);
        echoSame(svc, "Integer-min", Integer.MIN_VALUE);
        echoSame(svc, "Long", 42L);
        echoSame(svc, "Long-max", Long.MAX_VALUE);
        echoSame(svc, "Long-min", Long.MIN_VALUE);
        echoSame(svc, "Double", 1.5d);
        echoSame(svc, "Double-NaN", Double.NaN);
        echoSame(svc, "Double-+Inf", Double.POSITIVE_INFINITY);
        echoSame(svc, "Double--Inf", Double.NEGATIVE_INFINITY);
        echoSame(svc, "Double-0.1", 0.1d);
        echoSame(svc, "Boolean-true", Boolean.TRUE);
        echoSame(svc, "Boolean-false", Boolean.FALSE);
        echoSame(svc, "String-non-BMP", "a\uD83D\uDE00b");
        echoSame(svc, "String-empty", "");
        echoSame(svc, "byte[]", new byte[] {1, 2, 3});
        echoSame(svc, "Date", new Date(1700000000123L));
        echoSame(svc, "BigDecimal", new BigDecimal("1234.5678"));
        echoSame(svc, "BigInteger", new BigInteger("123456789012345678901234567890"));
        echoSame(svc, "ArrayList-mixed", new ArrayList<>(Arrays.asList(1, "two", 3.5, true, null, 4L)));
        HashMap<Integer, String> intKeys = new HashMap<>();
        intKeys.put(1, "a");
        intKeys.put(2, "b");
        echoSame(svc, "HashMap-Integer-keys", intKeys);
        check("echo-HashMap-key-class", () -> {
            Object back = svc.echo(intKeys);
            for (Object k : ((Map<?, ?>) back).keySet()) {
                if (!(k instanceof Integer)) {
                    throw new Fail("key " + k + " is a " + cls(k));
                }
            }
            return null;
        });
        echoSame(svc, "HashSet", new HashSet<>(Arrays.asList("x", "y", "z")));
        TreeMap<String, Integer> tree = new TreeMap<>();
        tree.put("b", 2);
        tree.put("a", 1);
        echoSame(svc, "TreeMap", tree);
        LinkedHashMap<String, Object> linked = new LinkedHashMap<>();
        linked.put("z", 1);
        linked.put("a", "x");
        linked.put("m", null);
        echoSame(svc, "LinkedHashMap", linked);
        check("echo-LinkedHashMap-order", () -> {
            Object back = svc.echo(linked);
            expectEq(new ArrayList<>(linked.keySet()), new ArrayList<>(((Map<?, ?>) back).keySet()));
            return null;
        });
        echoSame(svc, "Object[]", new Object[] {"a", 1});
        echoSame(svc, "int[]", new int[] {1, 2, 3});
        echoSame(svc, "long[]", new long[] {1L, 2L});
        echoSame(svc, "String[]", new String[] {"x", "y"});
        echoSame(svc, "User", Samples.user(5));
        echoSame(svc, "Level", Level.GOLD);
        check("echo-shared-reference", () -> {
            User u = Samples.user(9);
            List<User> two = new ArrayList<>(Arrays.asList(u, u));
            Object back = svc.echo(two);
            if (!(back instanceof List)) {
                throw new Fail("got " + cls(back));
            }
            List<?> l = (List<?>) back;
            expectEq(two, l);
            if (l.get(0) != l.get(1)) {
                throw new Fail("the two elements are distinct instances");
            }
            return cls(back);
        });
        check("echo-self-reference", () -> {
            List<Object> self = new ArrayList<>();
            self.add(self);
            Object back = svc.echo(self);
            if (!(back instanceof ArrayList)) {
                throw new Fail("got " + cls(back));
            }
            List<?> l = (List<?>) back;
            if (l.size() != 1 || l.get(0) != l) {
                throw new Fail("size " + l.size() + ", element 0 is " + (l.isEmpty() ? "-" : cls(l.get(0)))
                        + " but not the list itself");
            }
            return null;
        });
        echoSame(svc, "null", null);
        check("echo-exception", () -> {
            Object back = svc.echo(new IllegalStateException("boom"));
            if (!(back instanceof IllegalStateException) || back.getClass() != IllegalStateException.class) {
                throw new Fail("got " + cls(back) + " (" + back + ")");
            }
            expectEq("boom", ((Throwable) back).getMessage());
            return null;
        });
    }

    // ------------------------------------------------------------------ bench

    static void runBench(UserService svc, int concurrency, int seconds) throws Exception {
        User sample = Samples.user(7);
        for (int i = 0; i < 1000; i++) {
            svc.echoUser(sample);
        }
        long[] lat = new long[2000];
        for (int i = 0; i < lat.length; i++) {
            long t0 = System.nanoTime();
            svc.echoUser(sample);
            lat[i] = System.nanoTime() - t0;
        }
        Arrays.sort(lat);
        long p50us = lat[lat.length / 2] / 1000;

        AtomicLong calls = new AtomicLong();
        AtomicLong errors = new AtomicLong();
        long start = System.nanoTime();
        long deadline = start + seconds * 1_000_000_000L;
        Thread[] threads = new Thread[concurrency];
        for (int t = 0; t < concurrency; t++) {
            threads[t] = new Thread(() -> {
                while (System.nanoTime() < deadline) {
                    try {
                        svc.echoUser(sample);
                        calls.incrementAndGet();
                    } catch (RuntimeException e) {
                        if (errors.incrementAndGet() == 1) {
                            System.err.println("bench error: " + e);
                        }
                    }
                }
            });
            threads[t].start();
        }
        for (Thread t : threads) {
            t.join();
        }
        double elapsed = (System.nanoTime() - start) / 1e9;
        long n = calls.get();
        System.out.printf("BENCH calls=%d seconds=%.2f calls_per_sec=%.0f p50_us=%d%n",
                n, elapsed, n / elapsed, p50us);
        if (errors.get() > 0) {
            System.out.println("BENCH-ERRORS " + errors.get());
            failed++;
        }
    }

    // ------------------------------------------------------------------- main

    public static void main(String[] args) throws Exception {
        String url = null;
        String registry = null;
        String version = null;
        boolean metadataCenter = false;
        int timeout = 10000;
        String mode = "check";
        int concurrency = 16;
        int seconds = 5;
        boolean demo = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--demo":
                    // echo-types through org.apache.dubbo.demo.DemoService.echo(Object)
                    demo = true;
                    break;
                case "--url":
                    url = args[++i];
                    break;
                case "--registry":
                    registry = args[++i];
                    break;
                case "--metadata-center":
                    metadataCenter = true;
                    break;
                case "--version":
                    version = args[++i];
                    break;
                case "--timeout":
                    timeout = Integer.parseInt(args[++i]);
                    break;
                case "--migration-step":
                    System.setProperty("dubbo.application.migration.step", args[++i]);
                    break;
                case "--concurrency":
                    concurrency = Integer.parseInt(args[++i]);
                    break;
                case "--seconds":
                    seconds = Integer.parseInt(args[++i]);
                    break;
                case "check":
                case "echo-types":
                case "bench":
                    mode = args[i];
                    break;
                default:
                    System.err.println("unknown argument: " + args[i]);
                    System.exit(2);
            }
        }
        if ((url == null) == (registry == null)) {
            System.err.println("usage: JavaConsumer (--url dubbo://H:P/com.example.UserService | --registry"
                    + " zookeeper://H:P) [--version V] [--timeout ms] [--migration-step S] [--metadata-center]"
                    + " [check | echo-types | bench"
                    + " --concurrency C --seconds S]");
            System.exit(2);
        }

        ApplicationConfig app = new ApplicationConfig("java-consumer");
        app.setQosEnable(false);
        RegistryConfig reg;
        if (registry == null) {
            reg = new RegistryConfig("N/A");
        } else {
            reg = new RegistryConfig(registry);
            reg.setUseAsConfigCenter(false);
            // Dubbo 3 writes/reads the interface -> application mapping that application-level
            // discovery needs through the metadata center.
            reg.setUseAsMetadataCenter(metadataCenter);
        }
        ReferenceConfig<Object> ref = new ReferenceConfig<>();
        ref.setInterface(demo ? org.apache.dubbo.demo.DemoService.class : UserService.class);
        if (url != null) {
            ref.setUrl(url);
        }
        if (version != null) {
            ref.setVersion(version);
        }
        ref.setTimeout(timeout);
        ref.setRetries(0);
        ref.setFilter("capture");

        int code;
        try {
            DubboBootstrap.getInstance().application(app).registry(reg).reference(ref).start();
            UserService svc;
            if (demo) {
                org.apache.dubbo.demo.DemoService d = (org.apache.dubbo.demo.DemoService) ref.get();
                svc = (UserService) java.lang.reflect.Proxy.newProxyInstance(
                        UserService.class.getClassLoader(), new Class<?>[] {UserService.class},
                        (proxy, m, a) -> {
                            if (m.getName().equals("echo")) {
                                return d.echo(a[0]);
                            }
                            throw new UnsupportedOperationException(m.getName() + " (--demo)");
                        });
            } else {
                svc = (UserService) ref.get();
            }
            switch (mode) {
                case "echo-types":
                    runEchoTypes(svc);
                    break;
                case "bench":
                    runBench(svc, concurrency, seconds);
                    break;
                default:
                    runChecks(svc);
                    break;
            }
            if (!mode.equals("bench")) {
                done();
            }
            code = Checks.failed == 0 ? 0 : 1;
        } catch (Throwable t) {
            System.out.println("FAIL startup: " + t);
            t.printStackTrace(System.out);
            code = 1;
        }
        System.out.flush();
        // Dubbo's threads are not daemons: leave without a graceful shutdown.
        Runtime.getRuntime().halt(code);
    }
}
