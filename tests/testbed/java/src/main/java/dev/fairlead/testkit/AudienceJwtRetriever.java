package dev.fairlead.testkit;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import javax.security.auth.login.AppConfigurationEntry;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.security.oauthbearer.JwtRetriever;
import org.apache.kafka.common.security.oauthbearer.JwtRetrieverException;

/**
 * Kafka's client credentials grant plus an {@code audience} parameter, for identity providers
 * (such as Ory Hydra) that put an audience in a token only when asked, while Kafka's broker-side
 * validator refuses a token whose {@code aud} does not name the expected audience. Kafka's own
 * retriever sends only grant_type and scope. Plugged into Kafka's OAuthBearerLoginCallbackHandler
 * with {@code sasl.oauthbearer.jwt.retriever.class} (Kafka 4.1+), which still does the login,
 * the token's validation and its refresh; the JAAS options are Kafka's (clientId, clientSecret,
 * scope) plus {@code audience}.
 */
public class AudienceJwtRetriever implements JwtRetriever {
    private String url;
    private String basic;
    private String body;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    @Override
    public void configure(Map<String, ?> configs, String saslMechanism, List<AppConfigurationEntry> jaas) {
        url = String.valueOf(configs.get(SaslConfigs.SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL));
        Map<String, ?> o = jaas.get(0).getOptions();
        String id = String.valueOf(o.get("clientId"));
        String secret = String.valueOf(o.get("clientSecret"));
        basic = Base64.getEncoder().encodeToString(
            (enc(id) + ":" + enc(secret)).getBytes(StandardCharsets.UTF_8));
        body = "grant_type=client_credentials";
        for (String k : new String[] {"scope", "audience"}) {
            if (o.get(k) != null) {
                body += "&" + k + "=" + enc(String.valueOf(o.get(k)));
            }
        }
    }

    private static String enc(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8);
    }

    @Override
    public String retrieve() throws JwtRetrieverException {
        try {
            HttpRequest req = HttpRequest.newBuilder(URI.create(url))
                .timeout(Duration.ofSeconds(10))
                .header("Authorization", "Basic " + basic)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build();
            HttpResponse<String> r = http.send(req, HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() != 200) {
                throw new JwtRetrieverException("token endpoint answered HTTP " + r.statusCode());
            }
            Object parsed = Json.parse(r.body());
            Object token = parsed instanceof Map ? ((Map<?, ?>) parsed).get("access_token") : null;
            if (!(token instanceof String)) {
                throw new JwtRetrieverException("no access_token in the answer");
            }
            return (String) token;
        } catch (JwtRetrieverException e) {
            throw e;
        } catch (Exception e) {
            throw new JwtRetrieverException(e);
        }
    }
}
