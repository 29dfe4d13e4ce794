package com.example.hash;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.TimeZone;

import org.apache.dubbo.common.URL;
import org.apache.dubbo.rpc.Invocation;
import org.apache.dubbo.rpc.Invoker;
import org.apache.dubbo.rpc.Result;
import org.apache.dubbo.rpc.RpcInvocation;
import org.apache.dubbo.rpc.cluster.loadbalance.ConsistentHashLoadBalance;

/**
 * Asks Java Dubbo's own {@code ConsistentHashLoadBalance} which provider each key goes to
 * (run by crates/rdubbo-cluster/tests/consistent_hash_java.rs).
 *
 * <p>Standard input, one command a line, fields separated by tabs:
 * <ul>
 * <li>{@code P <params> <address>...}: the providers from now on, in this order:
 * {@code dubbo://<address>/demo.Api?interface=demo.Api&<params>} ({@code -} for no params);
 * <li>{@code K <argument>...}: a call of {@code echo} with these arguments, each
 * {@code <type>:<value>}: {@code s:<UTF-8 hex>} String, {@code c:<UTF-16 unit hex>}
 * Character, {@code i:} Integer, {@code l:} Long, {@code b:} Boolean,
 * {@code d:<raw bits hex>} Double, {@code t:<ms>} Date, {@code n:} null,
 * {@code L:<UTF-8 hex>,...} ArrayList of Strings.
 * </ul>
 * Standard output: {@code PICK <n> <host:port>} for the n-th key (from 0), then
 * {@code DONE <keys>}.
 *
 * <p>Each key asks a new balancer: Dubbo 2.7.23's selector also counts its picks and moves
 * a call off a provider above 1.5 times the mean; a fresh one answers with the ring alone,
 * as Dubbo 3 always does.
 */
public final class HashPicks {
    /** A provider that is never called: the balancer reads its URL only. */
    static final class Provider implements Invoker<Object> {
        private final URL url;

        Provider(URL url) {
            this.url = url;
        }

        @Override
        public Class<Object> getInterface() {
            return Object.class;
        }

        @Override
        public Result invoke(Invocation invocation) {
            throw new UnsupportedOperationException("never called");
        }

        @Override
        public URL getUrl() {
            return url;
        }

        @Override
        public boolean isAvailable() {
            return true;
        }

        @Override
        public void destroy() {
        }
    }

    private static String utf8(String hex) {
        byte[] bytes = new byte[hex.length() / 2];
        for (int i = 0; i < bytes.length; i++) {
            bytes[i] = (byte) Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16);
        }
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private static Object argument(String spec) {
        int colon = spec.indexOf(':');
        String type = spec.substring(0, colon);
        String v = spec.substring(colon + 1);
        switch (type) {
            case "s":
                return utf8(v);
            case "c":
                return (char) Integer.parseInt(v, 16);
            case "i":
                return Integer.valueOf(v);
            case "l":
                return Long.valueOf(v);
            case "b":
                return Boolean.valueOf(v);
            case "d":
                return Double.longBitsToDouble(Long.parseUnsignedLong(v, 16));
            case "t":
                return new Date(Long.parseLong(v));
            case "n":
                return null;
            case "L": {
                List<String> list = new ArrayList<>();
                if (!v.isEmpty()) {
                    for (String item : v.split(",", -1)) {
                        list.add(utf8(item));
                    }
                }
                return list;
            }
            default:
                throw new IllegalArgumentException("unknown argument type " + spec);
        }
    }

    public static void main(String[] args) throws Exception {
        // Java writes a Date in its default time zone; rdubbo writes UTC.
        TimeZone.setDefault(TimeZone.getTimeZone("UTC"));
        System.out.println("CHARSET " + Charset.defaultCharset());
        URL consumer = URL.valueOf("consumer://127.0.0.1/demo.Api?interface=demo.Api");
        List<Invoker<Object>> providers = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        int keys = 0;
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isEmpty()) {
                continue;
            }
            String[] f = line.split("\t", -1);
            if (f[0].equals("P")) {
                providers = new ArrayList<>();
                String params = f[1].equals("-") ? "" : "&" + f[1];
                for (int i = 2; i < f.length; i++) {
                    providers.add(new Provider(
                            URL.valueOf("dubbo://" + f[i] + "/demo.Api?interface=demo.Api" + params)));
                }
            } else if (f[0].equals("K")) {
                Object[] arguments = new Object[f.length - 1];
                Class<?>[] types = new Class<?>[arguments.length];
                for (int i = 1; i < f.length; i++) {
                    arguments[i - 1] = argument(f[i]);
                    types[i - 1] = arguments[i - 1] == null ? Object.class : arguments[i - 1].getClass();
                }
                RpcInvocation invocation = new RpcInvocation();
                invocation.setMethodName("echo");
                invocation.setParameterTypes(types);
                invocation.setArguments(arguments);
                Invoker<Object> picked = new ConsistentHashLoadBalance().select(providers, consumer, invocation);
                System.out.println("PICK " + keys + " " + picked.getUrl().getAddress());
                keys++;
            } else {
                throw new IllegalArgumentException("unknown command " + f[0]);
            }
        }
        System.out.println("DONE " + keys);
    }
}
