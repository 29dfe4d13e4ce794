package com.example;

import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ReferenceConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.SslConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;

/**
 * Calls UserService.inc(41) once over TLS and prints "RESULT &lt;n&gt;" or
 * "ERROR &lt;exception class&gt;: &lt;message&gt;" (on one line), then exits.
 *
 * <pre>
 * TlsConsumer --url dubbo://127.0.0.1:P/com.example.UserService?ssl-enabled=true --ca ca.pem
 *             [--cert client.pem --key client.key]
 * </pre>
 */
public final class TlsConsumer {
    private TlsConsumer() {
    }

    public static void main(String[] args) {
        String url = null;
        String ca = null;
        String cert = null;
        String key = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--url":
                    url = args[++i];
                    break;
                case "--ca":
                    ca = args[++i];
                    break;
                case "--cert":
                    cert = args[++i];
                    break;
                case "--key":
                    key = args[++i];
                    break;
                default:
                    System.err.println("unknown argument: " + args[i]);
                    System.exit(2);
            }
        }
        ApplicationConfig app = new ApplicationConfig("java-tls-consumer");
        app.setQosEnable(false);
        RegistryConfig reg = new RegistryConfig("N/A");
        SslConfig ssl = new SslConfig();
        ssl.setClientTrustCertCollectionPath(ca);
        if (cert != null) {
            ssl.setClientKeyCertChainPath(cert);
            ssl.setClientPrivateKeyPath(key);
        }
        ReferenceConfig<UserService> ref = new ReferenceConfig<>();
        ref.setInterface(UserService.class);
        ref.setUrl(url);
        ref.setTimeout(5000);
        ref.setRetries(0);
        ref.setCheck(false);
        try {
            DubboBootstrap.getInstance().application(app).registry(reg).ssl(ssl).reference(ref).start();
            UserService svc = ref.get();
            System.out.println("RESULT " + svc.inc(41L));
        } catch (Throwable t) {
            Throwable root = t;
            while (root.getCause() != null && root.getCause() != root) {
                root = root.getCause();
            }
            System.out.println("ERROR " + t.getClass().getName() + ": "
                    + String.valueOf(t.getMessage()).replace('\n', ' ').replace('\r', ' ')
                    + " (root: " + root + ")");
        }
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }
}
