package com.example;

import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ReferenceConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;

/**
 * JavaConsumer's checks (and echo-types) over a direct tri:// URL, with a version and a
 * group; Dubbo 3 only.
 *
 * <pre>
 * TriConsumer --url tri://127.0.0.1:P/com.example.UserService [--version V] [--group G]
 *             [check | echo-types]
 * </pre>
 * Prints "ok NAME" / "FAIL NAME: detail" lines and "DONE p passed, f failed"; exit code 0
 * iff nothing failed.
 */
public final class TriConsumer {
    private TriConsumer() {
    }

    public static void main(String[] args) {
        String url = null;
        String version = null;
        String group = null;
        String mode = "check";
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--url":
                    url = args[++i];
                    break;
                case "--version":
                    version = args[++i];
                    break;
                case "--group":
                    group = args[++i];
                    break;
                case "check":
                case "echo-types":
                    mode = args[i];
                    break;
                default:
                    System.err.println("unknown argument: " + args[i]);
                    System.exit(2);
            }
        }
        if (url == null) {
            System.err.println("usage: TriConsumer --url tri://H:P/com.example.UserService [--version V]"
                    + " [--group G] [check | echo-types]");
            System.exit(2);
        }
        ApplicationConfig app = new ApplicationConfig("java-tri-consumer");
        app.setQosEnable(false);
        ReferenceConfig<UserService> ref = new ReferenceConfig<>();
        ref.setInterface(UserService.class);
        ref.setUrl(url);
        if (version != null) {
            ref.setVersion(version);
        }
        if (group != null) {
            ref.setGroup(group);
        }
        ref.setTimeout(10000);
        ref.setRetries(0);
        ref.setFilter("capture");
        int code;
        try {
            DubboBootstrap.getInstance().application(app).registry(new RegistryConfig("N/A"))
                    .reference(ref).start();
            UserService svc = ref.get();
            if (mode.equals("echo-types")) {
                JavaConsumer.runEchoTypes(svc);
            } else {
                JavaConsumer.runChecks(svc);
            }
            Checks.done();
            code = Checks.failed == 0 ? 0 : 1;
        } catch (Throwable t) {
            System.out.println("FAIL startup: " + t);
            t.printStackTrace(System.out);
            code = 1;
        }
        System.out.flush();
        Runtime.getRuntime().halt(code);
    }
}
