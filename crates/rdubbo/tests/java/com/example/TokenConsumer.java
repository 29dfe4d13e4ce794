package com.example;

import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ReferenceConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;

/**
 * Calls UserService.inc(41) once, directly or through a registry, and prints "RESULT &lt;n&gt;"
 * or "ERROR &lt;exception class&gt;: &lt;message&gt;" (the message on one line), then exits.
 *
 * <pre>
 * TokenConsumer (--url dubbo://127.0.0.1:P/com.example.UserService | --registry zookeeper://127.0.0.1:Z)
 * </pre>
 */
public final class TokenConsumer {
    private TokenConsumer() {
    }

    public static void main(String[] args) {
        String url = null;
        String registry = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--url":
                    url = args[++i];
                    break;
                case "--registry":
                    registry = args[++i];
                    break;
                default:
                    System.err.println("unknown argument: " + args[i]);
                    System.exit(2);
            }
        }
        ApplicationConfig app = new ApplicationConfig("java-token-consumer");
        app.setQosEnable(false);
        RegistryConfig reg = new RegistryConfig(registry == null ? "N/A" : registry);
        reg.setUseAsConfigCenter(false);
        reg.setUseAsMetadataCenter(false);
        ReferenceConfig<UserService> ref = new ReferenceConfig<>();
        ref.setInterface(UserService.class);
        if (url != null) {
            ref.setUrl(url);
        }
        ref.setTimeout(5000);
        ref.setRetries(0);
        ref.setCheck(false);
        try {
            DubboBootstrap.getInstance().application(app).registry(reg).reference(ref).start();
            UserService svc = ref.get();
            System.out.println("RESULT " + svc.inc(41L));
        } catch (Throwable t) {
            System.out.println("ERROR " + t.getClass().getName() + ": "
                    + String.valueOf(t.getMessage()).replace('\n', ' ').replace('\r', ' '));
        }
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }
}
