package com.example;

import static com.example.Checks.*;

import java.util.HashMap;
import java.util.Map;
import java.util.Objects;

import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ReferenceConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;
import org.apache.dubbo.rpc.RpcException;
import org.apache.dubbo.rpc.service.EchoService;
import org.apache.dubbo.rpc.service.GenericService;

/**
 * Calls UserService the way Java code without the interface does: GenericService.$invoke
 * (generic=true, POJOs as maps with a "class" key), EchoService.$echo through a typed
 * reference, and calls the provider does not serve (another service, another version, a
 * method it does not have).
 *
 * <pre>
 * GenericConsumer --url dubbo://127.0.0.1:P/com.example.UserService [--version V]
 * </pre>
 *
 * Prints "ok NAME [info]" or "FAIL NAME: detail" per check, then "DONE p passed, f failed";
 * the exit code is 0 iff nothing failed. The not-found checks print what the consumer saw
 * after "cause: " as their info, for the caller to compare with Java's texts.
 */
public final class GenericConsumer {
    private GenericConsumer() {
    }

    /** A call whose result does not matter. */
    interface Call {
        Object run() throws Throwable;
    }

    /**
     * The first line of the consumer's exception text from "cause: " on: the first line of
     * the provider's answer (a Java provider's next lines are its stack trace).
     */
    static String cause(RpcException e) {
        String m = String.valueOf(e.getMessage());
        int i = m.indexOf("cause: ");
        String text = i < 0 ? m : m.substring(i + "cause: ".length());
        int nl = text.indexOf('\n');
        return oneLine(nl < 0 ? text : text.substring(0, nl));
    }

    /** Runs call, which must fail with an RpcException; returns its cause text. */
    static String expectRpcException(Call call) throws Throwable {
        try {
            Object r = call.run();
            throw new Fail("no exception, got " + r);
        } catch (RpcException e) {
            return "[" + cause(e) + "]";
        }
    }

    public static void main(String[] args) throws Exception {
        String url = null;
        String version = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--url":
                    url = args[++i];
                    break;
                case "--version":
                    version = args[++i];
                    break;
                default:
                    System.err.println("unknown argument: " + args[i]);
                    System.exit(2);
            }
        }
        if (url == null) {
            System.err.println("usage: GenericConsumer --url dubbo://H:P/com.example.UserService [--version V]");
            System.exit(2);
        }
        String base = url.substring(0, url.lastIndexOf('/'));

        ApplicationConfig app = new ApplicationConfig("java-generic-consumer");
        app.setQosEnable(false);

        ReferenceConfig<GenericService> generic = new ReferenceConfig<>();
        generic.setId("generic");
        generic.setInterface("com.example.UserService");
        generic.setGeneric("true");
        generic.setUrl(url);
        generic.setTimeout(10000);
        generic.setRetries(0);

        ReferenceConfig<UserService> typed = new ReferenceConfig<>();
        typed.setId("typed");
        typed.setInterface(UserService.class);
        typed.setUrl(url);
        typed.setTimeout(10000);
        typed.setRetries(0);

        ReferenceConfig<MissingService> missing = new ReferenceConfig<>();
        missing.setId("missing");
        missing.setInterface(MissingService.class);
        missing.setUrl(base + "/com.example.MissingService");
        missing.setTimeout(10000);
        missing.setRetries(0);
        missing.setCheck(false);

        ReferenceConfig<UserService> otherVersion = new ReferenceConfig<>();
        otherVersion.setId("otherVersion");
        otherVersion.setInterface(UserService.class);
        otherVersion.setUrl(url);
        otherVersion.setVersion("9.9.9");
        otherVersion.setTimeout(10000);
        otherVersion.setRetries(0);
        otherVersion.setCheck(false);
        if (version != null) {
            generic.setVersion(version);
            typed.setVersion(version);
        }

        int code;
        try {
            DubboBootstrap.getInstance()
                    .application(app)
                    .registry(new RegistryConfig("N/A"))
                    .reference(generic)
                    .reference(typed)
                    .reference(missing)
                    .reference(otherVersion)
                    .start();
            GenericService svc = generic.get();

            check("generic-getUser", () -> {
                Object r = svc.$invoke("getUser", new String[] {"java.lang.Long"}, new Object[] {7L});
                if (!(r instanceof Map)) {
                    throw new Fail("expected a Map, got " + cls(r) + ": " + r);
                }
                Map<?, ?> m = (Map<?, ?>) r;
                expectEq("com.example.User", m.get("class"));
                expectEq("ann", m.get("name"));
                expectEq(7, m.get("age"));
                Object address = m.get("address");
                if (!(address instanceof Map)) {
                    throw new Fail("address: expected a Map, got " + cls(address));
                }
                expectEq("com.example.Address", ((Map<?, ?>) address).get("class"));
                expectEq("Hangzhou", ((Map<?, ?>) address).get("city"));
                return null;
            });
            check("generic-createUser", () -> {
                Map<String, Object> user = new HashMap<>();
                user.put("class", "com.example.User");
                user.put("name", "ann");
                user.put("age", 7);
                Object r = svc.$invoke("createUser", new String[] {"com.example.User"}, new Object[] {user});
                expectEq(3007L, r);
                return null;
            });
            check("generic-createUser-no-class", () -> {
                Map<String, Object> user = new HashMap<>();
                user.put("name", "bobby");
                user.put("age", 2);
                Object r = svc.$invoke("createUser", new String[] {"com.example.User"}, new Object[] {user});
                expectEq(5002L, r);
                return null;
            });
            check("generic-inc-long", () -> {
                expectEq(6L, svc.$invoke("inc", new String[] {"long"}, new Object[] {5L}));
                return null;
            });
            check("generic-inc-Long", () -> {
                expectEq(7L, svc.$invoke("inc", new String[] {"java.lang.Long"}, new Object[] {5L}));
                return null;
            });
            check("generic-unknown-method", () -> expectRpcException(
                    () -> svc.$invoke("nope", new String[] {"java.lang.String"}, new Object[] {"x"})));

            UserService users = typed.get();
            check("echo-typed", () -> {
                EchoService echo = (EchoService) users;
                expectEq("hi", echo.$echo("hi"));
                expectEq(42, echo.$echo(42));
                return null;
            });
            check("typed-after-generic", () -> {
                expectEq(6L, users.inc(5L));
                return null;
            });

            MissingService nobody = missing.get();
            check("unknown-service", () -> expectRpcException(() -> nobody.hello("x")));
            UserService wrong = otherVersion.get();
            check("unknown-version", () -> expectRpcException(() -> wrong.inc(1L)));

            done();
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
